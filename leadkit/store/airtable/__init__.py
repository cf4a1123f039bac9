"""Airtable backend: the store protocol on the original's Master Clients base and one base per client.

Request policy (every call goes through `AirtableApi.request`):
- requests are paced per base and per token (`RequestPacer`): every process on the machine books its requests
  in one small schedule file per (endpoint, base) and one per token, so together they stay under
  AIRTABLE_MAX_REQUESTS_PER_S a base and AIRTABLE_TOKEN_MAX_REQUESTS_PER_S across bases; on dask the
  schedules are kept by the cluster's scheduler, shared by every worker and every kernel a worker started (found
  from the batch's slot spec) on every host, and by the coordinator inside `remote.coordinate`; meta API calls
  count against the base they touch;
- every request is counted in the workspace's tally (`usage`), the Airtable budget; a kernel of a dask batch
  counts on the scheduler, and the coordinator adds those counts to its tally (`remote.coordinate`);
- a request draws on the client's time budget (`leadkit.deadline_scope`): a turn in the pace or a 429 penalty that
  would outlast it fails at once with RateLimitError, leaving the budget's margin for writing the record;
- every request has a (connect, read) timeout; 5xx and dropped connections are retried by urllib3;
- a 429 (the backstop: another machine, or a pace set too high) waits out the penalty (Retry-After, else
  `AIRTABLE_RATE_LIMIT_WAIT_S`) within the client's budget and tries again, instead of failing after pyairtable's 3 seconds of back-off;
  the penalty goes into the schedule, so the other processes wait it out instead of asking for more 429s;
- errors come out as leadkit errors: 401/403 -> AuthError naming the base, 422 unknown field or select
  option -> SchemaError naming the table and field, HTML -> ConfigError, missing record -> MissingRecordError.

Records: a ClientRun is opened with one `performUpsert` on (`Run ID`, `Client ID`) per 10 records that sends
only the key fields, so an existing record is never touched; only the records the upsert created get their
creation fields (with their first event, in one request for the batch). A new run's ClientRuns, which cannot
exist yet, are opened with every field in that one upsert, which a repeat after a lost answer writes again
unchanged. A Running ClientRun's progress save is held until its next save or heartbeat, at most
AIRTABLE_PROGRESS_SAVE_S, and kept in a file in the workspace until written, so a killed process loses none of it
(`write_left_save`). A ClientRun's events live inside its record (`Events JSON`, and `Progress Log` for people),
so saving a record with its events is one request; events that have no ClientRun (or no room left in the
100,000-character cell) go to the `Run Events` table, upserted on a key made from the event, so a repeated save
adds nothing. No cell is written longer than Airtable's 100,000 characters (long texts are cut with a marker; the
Progress Log keeps its newest lines). Lists of ClientRuns read every field but the events (a projection). Formulas come from `pyairtable.formulas`, never from string concatenation.
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
