"""LinkedIn URLs and the keys they are matched on: a profile's key (`linkedin.com/in/jane-doe`) and a post's dedupe
key (its activity ID when it has one). The stores (lead look-ups), the harvest (items to leads) and the Apify
sandbox all match on these."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from leadkit.errors import DataError

_PROFILE_PATH = re.compile(r"^linkedin\.com/(in|company|pub)/[^/]+$")
_ACTIVITY_ID = re.compile(r"(?:activity|ugcpost|share)[:-](\d{8,})", re.IGNORECASE)


def strip_host(url: str) -> tuple[str, str]:
    """(host without www/country prefix, path) of a URL given with or without a scheme."""
    text = url.strip()
    if "://" not in text:
        text = "https://" + text.lstrip("/")
    parts = urlsplit(text)
    host = (parts.hostname or "").lower()
    if host.endswith(".linkedin.com"):
        host = "linkedin.com"
    elif host.startswith("www."):
        host = host[4:]
    return host, unquote(parts.path)


def normalize_profile_url(url: str) -> str:
    """The key a profile URL is matched on: lower case, no scheme, `www`, query, fragment, trailing
    slash or `recent-activity/...` suffix (`linkedin.com/in/jane-doe`)."""
    if not isinstance(url, str) or not url.strip():
        raise DataError(f"profile URL {url!r} is empty; accepted: a LinkedIn URL like linkedin.com/in/<handle>")
    host, path = strip_host(url)
    path = path.lower().rstrip("/")
    path = re.sub(r"/(recent-activity|detail)(/.*)?$", "", path)
    path = path.rstrip("/")
    return f"{host}{path}"


def is_valid_profile_url(url: str | None) -> bool:
    """A LinkedIn profile (or company page) URL the actor can harvest."""
    if not url or not isinstance(url, str):
        return False
    return bool(_PROFILE_PATH.match(normalize_profile_url(url)))


def post_key(url: str) -> str:
    """The dedupe key of a post URL: its activity ID when it has one (the same post appears as
    /posts/<slug>-activity-<id>-xyz and /feed/update/urn:li:activity:<id>), else the normalised URL."""
    match = _ACTIVITY_ID.search(url)
    if match:
        return f"activity:{match.group(1)}"
    host, path = strip_host(url)
    return f"{host}{path.rstrip('/')}"
