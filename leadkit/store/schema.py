"""The Airtable schema leadkit reads and writes: table and field names, select options, API limits.

Names are the original system's (so an operator can point leadkit at existing bases); fields the original
lacked and leadkit needs are added to the same tables, and new tables hold events, auth checks, failures
and leases. `MASTER_TABLES` and `CLIENT_TABLES` are the declarative spec that provisioning creates and the
schema check compares against.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from leadkit.models import ClientRunStatus, HarvestStatus, RunStatus, Source, TriageStatus

#: Airtable takes at most 10 records in one create, update or upsert request.
MAX_RECORDS_PER_REQUEST = 10
#: Largest page a list request returns.
MAX_PAGE_SIZE = 100
#: Longest URL Airtable accepts (pyairtable switches to POST .../listRecords beyond it).
MAX_URL_LENGTH = 16_000
#: Longest text a long-text cell holds.
MAX_LONG_TEXT = 100_000
#: Airtable's penalty after a 429: every request to the base is refused for 30 seconds.
RATE_LIMIT_PENALTY_S = 30.0
#: Requests per second per base.
RATE_LIMIT_PER_BASE = 5

#: Base IDs are `app` followed by 14 letters and digits; record IDs are `rec` likewise.
BASE_ID_RE = re.compile(r"app[A-Za-z0-9]{14}")
RECORD_ID_RE = re.compile(r"rec[A-Za-z0-9]{14}")

BaseKind = Literal["master", "client"]


class FieldType(StrEnum):
    """Airtable field types leadkit creates (the meta API's names)."""

    TEXT = "singleLineText"
    LONG_TEXT = "multilineText"
    NUMBER = "number"
    SELECT = "singleSelect"
    DATETIME = "dateTime"
    CHECKBOX = "checkbox"


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: FieldType
    choices: tuple[str, ...] = ()
    precision: int = 0
    #: A field added after bases were provisioned that leadkit reads as blank when it is missing and writes only
    #: when set: the schema check does not ask for it (provision still adds it; a write that needs it says so).
    optional: bool = False

    def meta_options(self) -> dict[str, Any] | None:
        """The `options` object the meta API wants when creating this field."""
        if self.type is FieldType.SELECT:
            return {"choices": [{"name": c} for c in self.choices]}
        if self.type is FieldType.NUMBER:
            return {"precision": self.precision}
        if self.type is FieldType.DATETIME:
            return {"dateFormat": {"name": "iso"}, "timeFormat": {"name": "24hour"}, "timeZone": "utc"}
        if self.type is FieldType.CHECKBOX:
            return {"icon": "check", "color": "greenBright"}
        return None

    def meta(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "type": str(self.type)}
        options = self.meta_options()
        if options is not None:
            body["options"] = options
        return body


@dataclass(frozen=True)
class TableSpec:
    """A table: its primary field first."""

    name: str
    fields: tuple[FieldSpec, ...] = field(default_factory=tuple)

    @property
    def primary(self) -> FieldSpec:
        return self.fields[0]

    def field(self, name: str) -> FieldSpec:
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(name)


def _text(name: str) -> FieldSpec:
    return FieldSpec(name, FieldType.TEXT)


def _long(name: str) -> FieldSpec:
    return FieldSpec(name, FieldType.LONG_TEXT)


def _number(name: str, precision: int = 0) -> FieldSpec:
    return FieldSpec(name, FieldType.NUMBER, precision=precision)


def _when(name: str) -> FieldSpec:
    return FieldSpec(name, FieldType.DATETIME)


def _select(name: str, choices: tuple[str, ...]) -> FieldSpec:
    return FieldSpec(name, FieldType.SELECT, choices)


# master base ---------------------------------------------------------------------------------------------


class Clients:
    TABLE = "Clients"
    CLIENT_ID = "Client ID"
    CLIENT_NAME = "Client Name"
    STATUS = "Status"
    SERVICE_LEVEL = "Service Level"
    POST_ACCESS = "Post Access Enabled"
    DAILY_TARGET = "Posts Daily Target"
    BATCH_SIZE = "Leads Batch Size for Post Collection"
    MAX_BATCHES = "Max Post Batches Per Day Guardrail"
    STREAM = "Processing Stream"
    BASE_ID = "Airtable Base ID"
    MAX_USD_PER_DAY = "Max Apify USD Per Day"


CLIENT_STATUSES = ("Active", "Paused", "Inactive", "Suspended")
#: Service levels as the original's select spells them; code uses the leading integer.
SERVICE_LEVELS = ("1-Lead Scoring", "2-Lead Scoring + Post Scoring", "3-Lead Scoring + Post Scoring + Harvesting")
YES, NO = "Yes", "No"


def service_level_option(level: int) -> str:
    """The select option for a service level number (the original's spelling)."""
    for option in SERVICE_LEVELS:
        if parse_service_level(option) == level:
            return option
    return f"{level}-Level {level}"


def parse_service_level(value: object) -> int:
    """The leading integer of a `Service Level` value (`2-Lead Scoring + ...` -> 2); 1 when blank."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    match = re.match(r"\s*(\d+)", str(value or ""))
    return int(match.group(1)) if match else 1


class ClientRunResults:
    TABLE = "Client Run Results"
    RUN_ID = "Run ID"  # the client run ID, `<base run id>-<client id>`, as the original kept it
    CLIENT_ID = "Client ID"
    CLIENT_NAME = "Client Name"
    STATUS = "Status"
    START_TIME = "Start Time"
    END_TIME = "End Time"
    PROFILES_SUBMITTED = "Profiles Submitted for Post Harvesting"
    POSTS_HARVESTED = "Total Posts Harvested"
    APIFY_RUN_ID = "Apify Run ID"
    APIFY_STATUS = "Apify Status"
    APIFY_COSTS = "Apify API Costs"
    SYSTEM_NOTES = "System Notes"
    ERROR_DETAILS = "Error Details"
    PROGRESS_LOG = "Progress Log"
    # leadkit's own
    BASE_RUN_ID = "Base Run ID"
    SOURCE = "Source"
    HEARTBEAT = "Heartbeat"
    NOTEBOOK = "Notebook"
    METRICS_JSON = "Metrics JSON"
    FAILURE_JSON = "Failure JSON"
    EVENTS_JSON = "Events JSON"
    LAST_EVENT_AT = "Last Event At"  # the newest event's time, so "events since" is a formula, not a download


#: Metric names mirrored into the original's numeric fields (Metrics JSON keeps them all).
METRIC_FIELDS: dict[str, str] = {
    "profiles_submitted": ClientRunResults.PROFILES_SUBMITTED,
    "posts_harvested": ClientRunResults.POSTS_HARVESTED,
    "apify_cost_usd": ClientRunResults.APIFY_COSTS,
}


class JobTracking:
    TABLE = "Job Tracking"
    RUN_ID = "Run ID"  # the base run ID
    STATUS = "Status"
    STREAM = "Stream"
    START_TIME = "Start Time"
    END_TIME = "End Time"
    SYSTEM_NOTES = "System Notes"
    CLIENTS_TOTAL = "Clients Total"
    CLIENTS_FAILED = "Clients Failed"
    STARTED_BY = "Started By"
    # leadkit's own: a `batch --dry-run` (checked), written only when checked, so a base without it takes real runs
    DRY_RUN = "Dry Run"


class RunEvents:
    TABLE = "Run Events"
    EVENT_ID = "Event ID"
    RUN_ID = "Run ID"
    CLIENT_ID = "Client ID"
    STAGE = "Stage"
    KIND = "Kind"
    MESSAGE = "Message"
    METRICS_JSON = "Metrics JSON"
    AT = "At"


class AuthChecks:
    TABLE = "Auth Checks"
    CHECK_ID = "Check ID"
    NAME = "Name"
    OK = "OK"
    CATEGORY = "Category"
    STATUS_CODE = "Status Code"
    LATENCY_MS = "Latency ms"
    HINT = "Hint"
    CHECKED_AT = "Checked At"
    DETAIL = "Detail"


class Failures:
    TABLE = "Failures"
    FAILURE_ID = "Failure ID"
    CATEGORY = "Category"
    FINGERPRINT = "Fingerprint"
    MESSAGE = "Message"
    HINT = "Hint"
    RUN_ID = "Run ID"
    CLIENT_ID = "Client ID"
    STAGE = "Stage"
    AT = "At"
    NOTEBOOK = "Notebook"
    CELL = "Cell"
    TRACEBACK = "Traceback"


class Leases:
    """Batch leases. Each change of holder claims a new generation record (`<name>#<generation>`) with an
    upsert: exactly one caller creates it, which is what makes the swap a compare-and-set."""

    TABLE = "Leases"
    LEASE_KEY = "Lease Key"
    NAME = "Name"
    GENERATION = "Generation"
    CLAIMED_AT = "Claimed At"
    HOST = "Host"
    PID = "PID"
    RUN_ID = "Run ID"
    ACQUIRED_AT = "Acquired At"
    HEARTBEAT_AT = "Heartbeat At"
    TTL_S = "TTL s"
    RELEASED = "Released"
    PROCESS_STARTED = "Process Started"


class Alerts:
    """One row per alert message and channel (the channel as scheme and host only)."""

    TABLE = "Alerts"
    ALERT_ID = "Alert ID"
    MESSAGE_ID = "Message ID"
    AT = "At"
    KIND = "Kind"
    KEY = "Key"
    CLIENTS = "Clients"
    RUN_ID = "Run ID"
    CHANNEL = "Channel"
    DELIVERED = "Delivered"
    ERROR = "Error"
    SUBJECT = "Subject"
    BODY = "Body"


class FailureTriage:
    """The operator's status and note per failure group, keyed by fingerprint (the original's Production Issues)."""

    TABLE = "Failure Triage"
    FINGERPRINT = "Fingerprint"
    STATUS = "Status"
    NOTE = "Note"
    CLIENTS = "Clients"
    CATEGORY = "Category"
    UPDATED_AT = "Updated At"


_CATEGORIES = ("auth", "config", "rate_limit", "upstream", "missing_record", "schema", "dependency", "data", "bug")

MASTER_TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        Clients.TABLE,
        (
            _text(Clients.CLIENT_ID),
            _text(Clients.CLIENT_NAME),
            _select(Clients.STATUS, CLIENT_STATUSES),
            _select(Clients.SERVICE_LEVEL, SERVICE_LEVELS),
            _select(Clients.POST_ACCESS, (YES, NO)),
            _number(Clients.DAILY_TARGET),
            _number(Clients.BATCH_SIZE),
            _number(Clients.MAX_BATCHES),
            _number(Clients.STREAM),
            _text(Clients.BASE_ID),
            _number(Clients.MAX_USD_PER_DAY, precision=2),
        ),
    ),
    TableSpec(
        ClientRunResults.TABLE,
        (
            _text(ClientRunResults.RUN_ID),
            _text(ClientRunResults.CLIENT_ID),
            _text(ClientRunResults.CLIENT_NAME),
            _select(ClientRunResults.STATUS, tuple(s.value for s in ClientRunStatus)),
            _when(ClientRunResults.START_TIME),
            _when(ClientRunResults.END_TIME),
            _number(ClientRunResults.PROFILES_SUBMITTED),
            _number(ClientRunResults.POSTS_HARVESTED),
            _text(ClientRunResults.APIFY_RUN_ID),
            _text(ClientRunResults.APIFY_STATUS),
            _number(ClientRunResults.APIFY_COSTS, precision=4),
            _long(ClientRunResults.SYSTEM_NOTES),
            _long(ClientRunResults.ERROR_DETAILS),
            _long(ClientRunResults.PROGRESS_LOG),
            _text(ClientRunResults.BASE_RUN_ID),
            _select(ClientRunResults.SOURCE, tuple(s.value for s in Source)),
            _when(ClientRunResults.HEARTBEAT),
            _text(ClientRunResults.NOTEBOOK),
            _long(ClientRunResults.METRICS_JSON),
            _long(ClientRunResults.FAILURE_JSON),
            _long(ClientRunResults.EVENTS_JSON),
            _when(ClientRunResults.LAST_EVENT_AT),
        ),
    ),
    TableSpec(
        JobTracking.TABLE,
        (
            _text(JobTracking.RUN_ID),
            _select(JobTracking.STATUS, tuple(s.value for s in RunStatus)),
            _number(JobTracking.STREAM),
            _when(JobTracking.START_TIME),
            _when(JobTracking.END_TIME),
            _long(JobTracking.SYSTEM_NOTES),
            _number(JobTracking.CLIENTS_TOTAL),
            _number(JobTracking.CLIENTS_FAILED),
            _text(JobTracking.STARTED_BY),
            FieldSpec(JobTracking.DRY_RUN, FieldType.CHECKBOX, optional=True),
        ),
    ),
    TableSpec(
        RunEvents.TABLE,
        (
            _text(RunEvents.EVENT_ID),
            _text(RunEvents.RUN_ID),
            _text(RunEvents.CLIENT_ID),
            _text(RunEvents.STAGE),
            _text(RunEvents.KIND),
            _long(RunEvents.MESSAGE),
            _long(RunEvents.METRICS_JSON),
            _when(RunEvents.AT),
        ),
    ),
    TableSpec(
        AuthChecks.TABLE,
        (
            _text(AuthChecks.CHECK_ID),
            _text(AuthChecks.NAME),
            FieldSpec(AuthChecks.OK, FieldType.CHECKBOX),
            _text(AuthChecks.CATEGORY),
            _number(AuthChecks.STATUS_CODE),
            _number(AuthChecks.LATENCY_MS, precision=1),
            _long(AuthChecks.HINT),
            _when(AuthChecks.CHECKED_AT),
            _long(AuthChecks.DETAIL),
        ),
    ),
    TableSpec(
        Failures.TABLE,
        (
            _text(Failures.FAILURE_ID),
            _select(Failures.CATEGORY, _CATEGORIES),
            _text(Failures.FINGERPRINT),
            _long(Failures.MESSAGE),
            _long(Failures.HINT),
            _text(Failures.RUN_ID),
            _text(Failures.CLIENT_ID),
            _text(Failures.STAGE),
            _when(Failures.AT),
            _text(Failures.NOTEBOOK),
            _number(Failures.CELL),
            _long(Failures.TRACEBACK),
        ),
    ),
    TableSpec(
        Leases.TABLE,
        (
            _text(Leases.LEASE_KEY),
            _text(Leases.NAME),
            _number(Leases.GENERATION),
            _when(Leases.CLAIMED_AT),
            _text(Leases.HOST),
            _number(Leases.PID),
            _text(Leases.RUN_ID),
            _text(Leases.ACQUIRED_AT),
            _text(Leases.HEARTBEAT_AT),
            _number(Leases.TTL_S, precision=3),
            FieldSpec(Leases.RELEASED, FieldType.CHECKBOX),
            _number(Leases.PROCESS_STARTED, precision=3),
        ),
    ),
    TableSpec(
        Alerts.TABLE,
        (
            _text(Alerts.ALERT_ID),
            _text(Alerts.MESSAGE_ID),
            _when(Alerts.AT),
            _text(Alerts.KIND),
            _text(Alerts.KEY),
            _long(Alerts.CLIENTS),
            _text(Alerts.RUN_ID),
            _text(Alerts.CHANNEL),
            FieldSpec(Alerts.DELIVERED, FieldType.CHECKBOX),
            _long(Alerts.ERROR),
            _text(Alerts.SUBJECT),
            _long(Alerts.BODY),
        ),
    ),
    TableSpec(
        FailureTriage.TABLE,
        (
            _text(FailureTriage.FINGERPRINT),
            _select(FailureTriage.STATUS, tuple(s.value for s in TriageStatus)),
            _long(FailureTriage.NOTE),
            _long(FailureTriage.CLIENTS),
            _text(FailureTriage.CATEGORY),
            _when(FailureTriage.UPDATED_AT),
        ),
    ),
)


# per-client base -----------------------------------------------------------------------------------------


class Leads:
    TABLE = "Leads"
    PROFILE_URL = "LinkedIn Profile URL"
    FIRST_NAME = "First Name"
    LAST_NAME = "Last Name"
    COMPANY = "Company Name"
    HARVEST_STATUS = "Posts Harvest Status"
    LAST_CHECK_AT = "Last Post Check At"
    POSTS_FOUND = "Posts Found (Last Run)"
    HARVEST_RUN_ID = "Posts Harvest Run ID"
    POSTS_ACTIONED = "Posts Actioned"
    POSTS_CONTENT = "Posts Content"
    DATE_CREATED = "Date Created"
    HARVEST_ERROR = "Posts Harvest Error"
    NEXT_CHECK_AT = "Next Post Check At"


CLIENT_TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        Leads.TABLE,
        (
            _text(Leads.PROFILE_URL),
            _text(Leads.FIRST_NAME),
            _text(Leads.LAST_NAME),
            _text(Leads.COMPANY),
            _select(Leads.HARVEST_STATUS, tuple(s.value for s in HarvestStatus)),
            _when(Leads.LAST_CHECK_AT),
            _number(Leads.POSTS_FOUND),
            _text(Leads.HARVEST_RUN_ID),
            _number(Leads.POSTS_ACTIONED),
            _long(Leads.POSTS_CONTENT),
            _when(Leads.DATE_CREATED),
            _long(Leads.HARVEST_ERROR),
            _when(Leads.NEXT_CHECK_AT),
        ),
    ),
)


def tables_for(kind: BaseKind) -> tuple[TableSpec, ...]:
    return MASTER_TABLES if kind == "master" else CLIENT_TABLES
