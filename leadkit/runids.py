"""Run IDs and client IDs: minted once, parsed from every known format, never re-normalised.

A base run ID is ``YYMMDD-HHMMSS`` in UTC; a client run ID is ``<base>-<client id>``. Client IDs contain
hyphens, so the base is always the first two 6-digit groups and everything after it is the client.
Legacy forms from the original system are read (``job_<op>_stream<N>_<YYYYMMDDHHMMSS>``, ``SR-YYMMDD-NNN...``,
a trailing ``.0``) and anything else is refused: no input is passed through unchanged.

Stdlib only: every notebook kernel imports this.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

from leadkit.errors import InvalidClientId, InvalidRunId

__all__ = [
    "ACCEPTED_FORMATS",
    "CLIENT_ID_MAX_LENGTH",
    "CLIENT_ID_PATTERN",
    "RunId",
    "validate_client_id",
]

CLIENT_ID_MAX_LENGTH = 64
CLIENT_ID_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}")
"""A whole client ID (use ``fullmatch``): ASCII letters, digits, ``_``, ``.``, ``-``; not led by ``.`` or ``-``."""

_CLIENT_ID_RULES = (
    "a client ID is 1 to 64 characters of ASCII letters, digits, '-', '_' and '.', "
    "does not start with '.' or '-', and contains no '..', whitespace or path separators"
)

ACCEPTED_FORMATS = (
    "YYMMDD-HHMMSS (e.g. 250925-201845)",
    "YYMMDD-HHMMSS-<client id> (e.g. 250925-201845-Acme-Co)",
    "YYMMDD-HHMMSS.0 (legacy numeric suffix)",
    "job_<operation>_stream<N>_<YYYYMMDDHHMMSS> (e.g. job_post_harvesting_stream1_20250929094802)",
    "SR-YYMMDD-NNN[-T####][-S<n>][-C<client id>] (legacy, e.g. SR-250923-001-S1-CGuy-Wilson)",
)

_BASE_FORMAT = "%y%m%d-%H%M%S"
_CANONICAL_BASE = re.compile(r"\d{6}-\d{6}", re.ASCII)
_CANONICAL = re.compile(r"(\d{6}-\d{6})(?:-(.*))?", re.DOTALL | re.ASCII)
_JOB = re.compile(r"job_([A-Za-z0-9]+(?:_[A-Za-z0-9]+)*?)_stream(\d+)_(\d{14})", re.ASCII)
_SR = re.compile(r"(SR-(\d{6})-(\d{3}))(?:-T(\d{4}))?(?:-S(\d+))?(?:-C(.*))?", re.DOTALL | re.ASCII)
_SR_BASE = re.compile(r"SR-(\d{6})-\d{3}", re.ASCII)
# The original once wrote "-CCGuy-Wilson"; legacy client IDs start with a capital, so "-C" + "C" + capital is
# the doubled prefix, while "-CCatalyst" is the single prefix on "Catalyst".
_DOUBLED_C_PREFIX = re.compile(r"C[A-Z]")
_LEGACY_FLOAT_SUFFIX = ".0"
_BATCH_ALL_CLIENTS = "batch-all-clients"


def validate_client_id(text: str) -> str:
    """Return ``text`` unchanged if it is a safe client ID, else raise :class:`InvalidClientId`.

    Applied before a client ID reaches a file path, an Airtable formula or a notebook name.
    """
    if not isinstance(text, str):
        raise InvalidClientId(f"Client ID {text!r} is a {type(text).__name__}, not text; {_CLIENT_ID_RULES}.")
    if not text:
        raise InvalidClientId(f"Client ID is empty; {_CLIENT_ID_RULES}.")
    if len(text) > CLIENT_ID_MAX_LENGTH:
        raise InvalidClientId(f"Client ID {text[:70]!r}... is {len(text)} characters long; {_CLIENT_ID_RULES}.")
    if CLIENT_ID_PATTERN.fullmatch(text) is None or ".." in text:
        raise InvalidClientId(f"Client ID {text!r} is not valid; {_CLIENT_ID_RULES}.")
    return text


def _invalid(text: object, reason: str) -> InvalidRunId:
    return InvalidRunId(
        f"Run ID {text!r} is not valid: {reason}. Accepted formats: " + "; ".join(ACCEPTED_FORMATS) + "."
    )


def _parse_base_time(base: str, original: object) -> datetime:
    """The UTC time of a ``YYMMDD-HHMMSS`` base (already matched as 6 + 6 ASCII digits)."""
    yy, mo, dd, hh, mi, ss = (int(base[i : i + 2]) for i in (0, 2, 4, 7, 9, 11))
    try:
        return datetime(2000 + yy, mo, dd, hh, mi, ss, tzinfo=UTC)
    except ValueError:
        raise _invalid(original, f"{base!r} is not a real date and time (YYMMDD-HHMMSS, UTC)") from None


def _check_sr_date(yymmdd: str, original: object) -> None:
    try:
        date(2000 + int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:]))
    except ValueError:
        raise _invalid(original, f"{yymmdd!r} is not a real date (YYMMDD)") from None


def _doubled(client_id: str) -> bool:
    half, rest = divmod(len(client_id), 2)
    return rest == 1 and client_id[half] == "-" and client_id[:half] == client_id[half + 1 :]


@dataclass(frozen=True)
class RunId:
    """A run ID: a base (``YYMMDD-HHMMSS`` or legacy ``SR-YYMMDD-NNN``) and an optional client.

    Equality and hashing use ``base`` and ``client_id``; ``started_at`` (UTC) follows from a canonical base
    and is None for the legacy SR form.
    """

    base: str
    client_id: str | None = None
    started_at: datetime | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.base, str):
            raise _invalid(self.base, f"the base is a {type(self.base).__name__}, not text")
        if _CANONICAL_BASE.fullmatch(self.base):
            started = _parse_base_time(self.base, self.base)
        elif match := _SR_BASE.fullmatch(self.base):
            _check_sr_date(match.group(1), self.base)
            started = None
        else:
            raise _invalid(self.base, "the base must be YYMMDD-HHMMSS or SR-YYMMDD-NNN")
        if self.started_at is not None and self.started_at != started:
            raise _invalid(self.base, f"started_at {self.started_at.isoformat()} does not match the base {self.base}")
        object.__setattr__(self, "started_at", started)
        if self.client_id is not None:
            self._check_client(self.client_id)

    def _check_client(self, client_id: str) -> None:
        label = f"{self.base}{self._separator}{client_id}" if isinstance(client_id, str) else self.base
        try:
            validate_client_id(client_id)
        except InvalidClientId as exc:
            raise _invalid(label, f"the client part is not a valid client ID ({exc.message})") from None
        if _doubled(client_id):
            half = client_id[: len(client_id) // 2]
            raise _invalid(label, f"the client suffix is doubled ({half!r} twice); a run ID carries it once")
        if client_id == _BATCH_ALL_CLIENTS or client_id.startswith(_BATCH_ALL_CLIENTS + "-"):
            raise _invalid(label, "the legacy '<base>-batch-all-clients[-<client>]' form is not a run ID")
        if self.is_legacy and _DOUBLED_C_PREFIX.match(client_id):
            raise _invalid(label, "the legacy client prefix '-C' is doubled ('-CC...')")

    @property
    def _separator(self) -> str:
        return "-C" if self.is_legacy else "-"

    @property
    def is_legacy(self) -> bool:
        """True for the legacy ``SR-YYMMDD-NNN`` form, which has no start time."""
        return self.started_at is None

    @classmethod
    def new(cls, client_id: str | None = None, now: datetime | None = None) -> RunId:
        """Mint a run ID from ``now`` (default: the current time), in UTC, to the second.

        A naive ``now`` is read as UTC.
        """
        moment = datetime.now(UTC) if now is None else now
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)
        if not 2000 <= moment.year <= 2099:
            raise _invalid(moment.isoformat(), "a run ID can only be minted for a time in 2000-2099 UTC")
        base = moment.strftime(_BASE_FORMAT)
        if client_id is not None:
            validate_client_id(client_id)
        return cls(base, client_id)

    @classmethod
    def parse(cls, text: str) -> RunId:
        """Read any known run-ID format; raise :class:`InvalidRunId` for anything else."""
        if not isinstance(text, str):
            raise _invalid(text, f"expected text, got a {type(text).__name__}")
        stripped = text.strip()
        if not stripped:
            raise _invalid(text, "it is empty")
        if match := _CANONICAL.fullmatch(stripped):
            base, client = match.group(1), match.group(2)
            _parse_base_time(base, text)
            if client is None:
                return cls(base)
            if client == "":
                raise _invalid(text, "the client part after the base is empty")
            return cls(base, client)
        # A trailing ".0" (an ID once stored as a number) is legacy noise only where the ID ends in digits;
        # after a client part it belongs to the client ID ("v1.0").
        unsuffixed = stripped.removesuffix(_LEGACY_FLOAT_SUFFIX)
        if _CANONICAL_BASE.fullmatch(unsuffixed):
            _parse_base_time(unsuffixed, text)
            return cls(unsuffixed)
        if match := _JOB.fullmatch(unsuffixed):
            stamp = match.group(3)
            if not stamp.startswith("20"):
                raise _invalid(text, f"{stamp!r} is not in 2000-2099, which a YYMMDD base can hold")
            base = f"{stamp[2:8]}-{stamp[8:]}"
            _parse_base_time(base, text)
            return cls(base)
        if match := _SR.fullmatch(stripped if "-C" in stripped else unsuffixed):
            base, client = match.group(1), match.group(6)
            _check_sr_date(match.group(2), text)
            if client is None:
                return cls(base)
            if client == "":
                raise _invalid(text, "the '-C' client part is empty")
            return cls(base, client)
        raise _invalid(text, "it matches none of the accepted formats")

    def for_client(self, client_id: str) -> RunId:
        """This run for ``client_id``: self if it already names that client, an error if another."""
        if self.client_id == client_id:
            return self
        if self.client_id is not None:
            raise _invalid(
                str(self), f"it already belongs to client {self.client_id!r}, so it cannot be for {client_id!r}"
            )
        return replace(self, client_id=client_id, started_at=None)

    @property
    def base_id(self) -> RunId:
        """The run without its client: the key of the batch's Run (Job Tracking) record."""
        if self.client_id is None:
            return self
        return replace(self, client_id=None, started_at=None)

    def next_second(self) -> RunId:
        """The run ID one second later, for when the store says this base is already taken."""
        if self.started_at is None:
            raise _invalid(str(self), "a legacy SR run ID has no time, so it has no next second")
        later = (self.started_at + timedelta(seconds=1)).strftime(_BASE_FORMAT)
        return RunId(later, self.client_id)

    def __str__(self) -> str:
        if self.client_id is None:
            return self.base
        return f"{self.base}{self._separator}{self.client_id}"
