"""Alert channels: Apprise URLs from `LEADKIT_ALERT_URLS`, each named without its secrets.

A channel URL is a secret as a whole: Pushbullet's, Prowl's, Pushover's and Telegram's carry their token in the
host, Slack's, Discord's and many webhooks' in the path or the query, e-mail URLs a password. So a channel is shown
and recorded by Apprise's own privacy URL (`url(privacy=True)`, each scheme masked its own way) without its
options, or, when that still shows a part of the URL that may be secret (a generic webhook's path), by
`scheme://host[:port]/~` plus a short fingerprint of the whole URL. Delivery errors are Apprise's own words with
every part of the URL that the name does not show replaced; Apprise's log records (which carry the URL) never
reach leadkit's loggers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from leadkit.errors import ConfigError

#: What separates channels in LEADKIT_ALERT_URLS.
_SEPARATORS = re.compile(r"[\s,]+")


def _quiet_apprise() -> None:
    """Keep Apprise's log records (they carry channel URLs) from every handler outside its own capture; done at
    each use, since a later logging configuration may set `propagate` back."""
    logger = logging.getLogger("apprise")
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())


@dataclass(frozen=True)
class Channel:
    """One Apprise URL. `name` is what may be shown; `url` never is."""

    name: str
    url: str

    def secrets(self) -> list[str]:
        """Every part of the URL that its name does not show (host and port pieces, user, password, path
        segments, query values), in plain and percent-decoded form, longest first: what must never appear in any
        output."""
        return url_parts(self.url, shown=self.name)

    def redact(self, text: str) -> str:
        """`text` with the URL and each of its secret parts replaced by `***`."""
        text = text.replace(self.url, self.name)
        for value in self.secrets():
            text = text.replace(value, "***")
        return text


def url_parts(url: str, *, shown: str = "") -> list[str]:
    """The pieces of `url` that may be secret (netloc pieces split at `@` and `:`, path segments, query values,
    fragment), plain and percent-decoded, at least 3 characters, minus those that `shown` holds; longest first."""
    parts = urlsplit(url.strip())
    found = set(re.split(r"[@:]", parts.netloc))
    found.update(seg for seg in parts.path.split("/") if seg)
    found.update(value for _, value in parse_qsl(parts.query, keep_blank_values=False))
    found.update(parts.fragment.split("/"))
    found |= {unquote(v) for v in found}
    return sorted((v for v in found if len(v) >= 3 and v not in shown), key=len, reverse=True)


def _beyond_host(url: str) -> list[str]:
    """The password, path segments, query values and fragment of `url` (plain and decoded): the pieces a privacy
    URL must not show (Apprise masks the tokens it knows in the host and user itself)."""
    parts = urlsplit(url.strip())
    found = {parts.password or ""}
    found.update(seg for seg in parts.path.split("/") if seg)
    found.update(value for _, value in parse_qsl(parts.query, keep_blank_values=False))
    found.update(parts.fragment.split("/"))
    found |= {unquote(v) for v in found}
    return [v for v in found if v]


def _looks_secret(piece: str) -> bool:
    """A piece that may be a token: 6 characters or more with a digit or both cases, or 12 or more of any kind
    (`alerts` or `hooks` in a webhook's path is not; `T1JJ3T3L2`, `xoxb-...` is)."""
    if len(piece) >= 12:
        return True
    has_digit = any(c.isdigit() for c in piece)
    mixed = any(c.islower() for c in piece) and any(c.isupper() for c in piece)
    return len(piece) >= 6 and (has_digit or mixed)


def fingerprint(url: str) -> str:
    """A short, stable stand-in for a URL: 8 hex digits of its SHA-256 (tells two channels apart, reveals
    nothing)."""
    import hashlib

    return hashlib.sha256(url.strip().encode()).hexdigest()[:8]


def channel_name(url: str, plugin: Any = None) -> str:
    """What may be shown of an Apprise URL: Apprise's privacy URL without its options (`pbul://C...j/`,
    `mailto://leadkit:****@127.0.0.1:8025/ops%40example.com`), or `scheme://host[:port]/~fingerprint` when that
    would still show a piece of the URL that may be secret (a webhook's path: `json://127.0.0.1:8025/~3fa2c1d0`).
    `plugin` is Apprise's instance for the URL (made here when not given)."""
    url = url.strip()
    parts = urlsplit(url)
    if not parts.scheme:
        raise ConfigError(
            "an entry of LEADKIT_ALERT_URLS has no scheme (it is not shown: it may hold a secret)",
            hint="Each channel is an Apprise URL such as mailto://user:pass@smtp.example.com or json://host:port/path.",
        )
    scheme = parts.scheme.lower()
    if plugin is None:
        plugin = _instantiate(Channel(f"{scheme}://~{fingerprint(url)}", url))
    private = ""
    if plugin is not None:
        try:
            private = str(plugin.url(privacy=True)).split("?", 1)[0]
        except Exception:  # a plugin whose url() fails: fall back to the fingerprint
            private = ""
    secret_parts = [p for p in _beyond_host(url) if _looks_secret(p)]
    if private and not any(p in private for p in secret_parts):
        return private
    netloc = urlsplit(private).netloc if private else ""
    if not netloc or any(p in netloc for p in secret_parts):
        netloc = ""
    return f"{scheme}://{netloc}/~{fingerprint(url)}"


def parse_channels(text: str | None) -> list[Channel]:
    """The channels of LEADKIT_ALERT_URLS (comma- or space-separated Apprise URLs); [] when unset.

    Raises ConfigError naming the channel (scheme and host only) that Apprise cannot use."""
    channels = []
    for url in _SEPARATORS.split(text or ""):
        if not url:
            continue
        provisional = Channel(f"{urlsplit(url).scheme.lower()}://~{fingerprint(url)}", url)
        plugin = _instantiate(provisional) if urlsplit(url).scheme else None
        channel = Channel(channel_name(url, plugin), url)
        if plugin is None:
            raise ConfigError(
                f"LEADKIT_ALERT_URLS: Apprise cannot use the channel {channel.name} (unknown scheme or bad address)",
                hint="See the Apprise URL formats (github.com/caronc/apprise/wiki); e-mail needs ?to=ADDRESS "
                "and a valid from address, e.g. mailto://127.0.0.1:8025?to=ops@example.com&from=leadkit@example.com.",
            )
        channels.append(channel)
    return channels


#: Loggers whose records may carry a channel URL: Apprise's own, and urllib3's debug lines (the request path).
_URL_LOGGERS = ("apprise", "urllib3.connectionpool")


class _Redacting(logging.Filter):
    """Rewrites a record's text with the channel's secret parts replaced (whatever handler it reaches)."""

    def __init__(self, channel: Channel) -> None:
        super().__init__()
        self.channel = channel

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = self.channel.redact(text)
        if clean != text:
            record.msg, record.args = clean, None
        return True


@contextmanager
def _redacted(channel: Channel) -> Iterator[None]:
    _quiet_apprise()
    redacting = _Redacting(channel)
    loggers = [logging.getLogger(name) for name in _URL_LOGGERS]
    for logger in loggers:
        logger.addFilter(redacting)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(redacting)


def _instantiate(channel: Channel) -> Any:
    with _redacted(channel):
        import apprise

        with apprise.LogCapture(level=logging.DEBUG):
            return apprise.Apprise.instantiate(channel.url)


def deliver(channel: Channel, subject: str, body: str) -> str | None:
    """Send one plain-text message; None when Apprise reports it delivered, else the error (redacted)."""
    with _redacted(channel):
        return _deliver(channel, subject, body)


def _deliver(channel: Channel, subject: str, body: str) -> str | None:
    import apprise

    notifier = apprise.Apprise()
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
        try:
            if not notifier.add(channel.url):
                return channel.redact(f"Apprise cannot use {channel.name}")
            ok = notifier.notify(body=body, title=subject, body_format=apprise.NotifyFormat.TEXT)
        except Exception as exc:  # Apprise's plugins raise what their libraries raise; recorded, never fatal
            return channel.redact(f"{type(exc).__name__}: {exc}")[:500]
        lines = [line.strip() for line in captured.getvalue().splitlines() if line.strip()]
    if ok:
        return None
    detail = "; ".join(lines[-3:]) or "Apprise reported the delivery failed"
    return channel.redact(detail)[:500]
