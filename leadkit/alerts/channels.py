"""Alert channels: Apprise URLs from `LEADKIT_ALERT_URLS`, each named by its scheme and host only.

A channel URL is a secret as a whole: Slack's, Discord's and many webhook URLs carry their token in the path or
the query, e-mail URLs a password. So a channel is shown and recorded as `scheme://host[:port]`; delivery errors
are Apprise's own words with every part of the URL beyond scheme and host replaced; and Apprise's log records
(which carry the URL) never reach leadkit's loggers.
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
        """Every part of the URL that is not its scheme, host or port (user, password, path segments, query
        values), in plain and percent-decoded form, longest first: what must never appear in any output."""
        parts = urlsplit(self.url)
        found = {parts.username or "", parts.password or ""}
        found.update(seg for seg in parts.path.split("/") if seg)
        found.update(value for _, value in parse_qsl(parts.query, keep_blank_values=False))
        found.update(parts.fragment.split("/"))
        found |= {unquote(v) for v in found}
        return sorted((v for v in found if len(v) >= 3), key=len, reverse=True)

    def redact(self, text: str) -> str:
        """`text` with the URL and each of its secret parts replaced by `***`."""
        text = text.replace(self.url, self.name)
        for value in self.secrets():
            text = text.replace(value, "***")
        return text


def channel_name(url: str) -> str:
    """`scheme://host[:port]` of an Apprise URL (`json://127.0.0.1:8025`); the rest may hold a secret."""
    parts = urlsplit(url.strip())
    if not parts.scheme:
        raise ConfigError(
            "an entry of LEADKIT_ALERT_URLS has no scheme (it is not shown: it may hold a secret)",
            hint="Each channel is an Apprise URL such as mailto://user:pass@smtp.example.com or json://host:port/path.",
        )
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port else "")


def parse_channels(text: str | None) -> list[Channel]:
    """The channels of LEADKIT_ALERT_URLS (comma- or space-separated Apprise URLs); [] when unset.

    Raises ConfigError naming the channel (scheme and host only) that Apprise cannot use."""
    channels = []
    for url in _SEPARATORS.split(text or ""):
        if not url:
            continue
        channel = Channel(channel_name(url), url)
        if _instantiate(channel) is None:
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
