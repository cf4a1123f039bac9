"""Airtable backend: the store protocol on the original's Master Clients base and one base per client.

Request policy (every call goes through `AirtableApi.request`):
- requests are paced per base (`RequestPacer`): every process on the machine books its requests in one small
  schedule file per (endpoint, base), so together they stay under AIRTABLE_MAX_REQUESTS_PER_S; meta API calls
  count against the base they touch;
- every request has a (connect, read) timeout; 5xx and dropped connections are retried by urllib3;
- a 429 (the backstop: another machine, or a pace set too high) waits out the penalty (Retry-After, else
  `AIRTABLE_RATE_LIMIT_WAIT_S`) and tries again, instead of failing after pyairtable's 3 seconds of back-off;
  the penalty goes into the schedule, so the other processes wait it out instead of asking for more 429s;
- errors come out as leadkit errors: 401/403 -> AuthError naming the base, 422 unknown field or select
  option -> SchemaError naming the table and field, HTML -> ConfigError, missing record -> MissingRecordError.

Records: a ClientRun is opened with one `performUpsert` on (`Run ID`, `Client ID`) per 10 records that sends
only the key fields, so an existing record is never touched; only the records the upsert created get their
creation fields. A ClientRun's events live inside its record (`Events JSON`, and `Progress Log` for people),
so saving a record with its events is one request; events that have no ClientRun (or no room left) go to
the `Run Events` table. Formulas come from `pyairtable.formulas`, never from string concatenation.
"""

from leadkit.store.airtable.api import (
    CONNECT_TIMEOUT_S,
    PROVISION_HINT,
    RATE_LIMIT_ATTEMPTS,
    SCOPES_HINT,
    AirtableApi,
    airtable_error,
    make_api,
    validate_base_id,
)
from leadkit.store.airtable.leads import AirtableLeadBase
from leadkit.store.airtable.pacing import PACE_MARGIN_S, RequestPacer, default_pace_dir
from leadkit.store.airtable.store import SCHEMA_CHECK_TTL_S, AirtableStore

__all__ = [
    "CONNECT_TIMEOUT_S",
    "PACE_MARGIN_S",
    "PROVISION_HINT",
    "RATE_LIMIT_ATTEMPTS",
    "SCHEMA_CHECK_TTL_S",
    "SCOPES_HINT",
    "AirtableApi",
    "AirtableLeadBase",
    "AirtableStore",
    "RequestPacer",
    "airtable_error",
    "default_pace_dir",
    "make_api",
    "validate_base_id",
]
