"""SQLite backend: `<home>/leadkit.sqlite` for the master records, `<home>/bases/<client id>.sqlite` for each
client's leads (a base per client, as in Airtable, so one client's code path cannot touch another's leads).

One module per concern: `files` (opening, checks, the connection and its pool), `migrations` (the schemas),
`rows` (rows to models), `leads` (a client's lead base), `master` (the master store).
"""

from leadkit.store.sqlite.files import (
    BASES_DIR,
    LEAD_BASE_CONNECTIONS,
    MASTER_FILE,
    check_file,
    file_error,
    inspect_file,
    is_workspace_or_empty,
    workspace_exists,
)
from leadkit.store.sqlite.leads import SQLiteLeadBase
from leadkit.store.sqlite.master import SQLiteStore

__all__ = [
    "BASES_DIR",
    "LEAD_BASE_CONNECTIONS",
    "MASTER_FILE",
    "SQLiteLeadBase",
    "SQLiteStore",
    "check_file",
    "file_error",
    "inspect_file",
    "is_workspace_or_empty",
    "workspace_exists",
]
