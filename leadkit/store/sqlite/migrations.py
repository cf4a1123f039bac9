"""The SQLite schemas, as forward migrations: the file's `PRAGMA user_version` counts the ones applied. Append, never
edit: a workspace made by an older leadkit migrates forward on open."""

from __future__ import annotations

MASTER_MIGRATIONS: list[str] = [
    """
    CREATE TABLE clients (
        client_id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, service_level INTEGER NOT NULL,
        post_access INTEGER NOT NULL, daily_target INTEGER NOT NULL, batch_size INTEGER NOT NULL,
        max_batches INTEGER NOT NULL, stream INTEGER NOT NULL, base_id TEXT
    );
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY, status TEXT NOT NULL, stream INTEGER NOT NULL, started_at TEXT NOT NULL,
        ended_at TEXT, started_by TEXT NOT NULL, clients_total INTEGER NOT NULL, clients_failed INTEGER NOT NULL,
        notes TEXT NOT NULL
    );
    CREATE INDEX runs_started ON runs(started_at);
    CREATE TABLE client_runs (
        id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, client_id TEXT NOT NULL, client_name TEXT NOT NULL,
        source TEXT NOT NULL, status TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT,
        heartbeat_at TEXT NOT NULL, metrics TEXT NOT NULL, notebook TEXT, reason TEXT, failure TEXT,
        UNIQUE (run_id, client_id)
    );
    CREATE INDEX client_runs_client ON client_runs(client_id, started_at);
    CREATE INDEX client_runs_started ON client_runs(started_at);
    CREATE INDEX client_runs_status ON client_runs(status);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, client_id TEXT NOT NULL, stage TEXT NOT NULL,
        kind TEXT NOT NULL, message TEXT NOT NULL, metrics TEXT NOT NULL, at TEXT NOT NULL
    );
    CREATE INDEX events_run ON events(run_id, client_id);
    CREATE INDEX events_at ON events(at);
    CREATE TABLE failures (
        id INTEGER PRIMARY KEY, run_id TEXT, client_id TEXT, stage TEXT, category TEXT NOT NULL,
        fingerprint TEXT NOT NULL, message TEXT NOT NULL, hint TEXT NOT NULL, at TEXT NOT NULL, notebook TEXT,
        cell INTEGER, traceback TEXT
    );
    CREATE INDEX failures_at ON failures(at);
    CREATE TABLE auth_checks (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL, ok INTEGER NOT NULL, category TEXT, status INTEGER,
        latency_ms REAL NOT NULL, hint TEXT NOT NULL, checked_at TEXT NOT NULL, detail TEXT NOT NULL
    );
    CREATE INDEX auth_checks_at ON auth_checks(checked_at);
    CREATE TABLE leases (
        name TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, run_id TEXT NOT NULL,
        acquired_at TEXT NOT NULL, heartbeat_at TEXT NOT NULL, ttl_s REAL NOT NULL
    );
    """,
    """
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY, message_id TEXT NOT NULL, at TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL,
        clients TEXT NOT NULL, run_id TEXT, channel TEXT NOT NULL, delivered INTEGER NOT NULL, error TEXT,
        subject TEXT NOT NULL, body TEXT NOT NULL
    );
    CREATE INDEX alerts_at ON alerts(at);
    CREATE INDEX alerts_kind_key ON alerts(kind, key, at);
    CREATE TABLE failure_triage (
        fingerprint TEXT PRIMARY KEY, status TEXT NOT NULL, note TEXT NOT NULL, clients TEXT NOT NULL,
        category TEXT NOT NULL, updated_at TEXT NOT NULL
    );
    """,
    """
    ALTER TABLE clients ADD COLUMN max_usd_per_day REAL;
    """,
    # the lease holder's process start time: a reused PID is not the holder
    """
    ALTER TABLE leases ADD COLUMN process_started REAL NOT NULL DEFAULT 0;
    """,
    # a client's failures newest first without scanning all of them (health, the dashboard's client rows)
    """
    CREATE INDEX failures_client ON failures(client_id, at);
    """,
    # each client's lead summary (`LeadSummary`, JSON), written with its leads: Client health reads one table
    """
    CREATE TABLE lead_summaries (client_id TEXT PRIMARY KEY, summary TEXT NOT NULL, written_at TEXT NOT NULL);
    """,
    # a `batch --dry-run` is marked: left out of success rates and silence checks
    """
    ALTER TABLE runs ADD COLUMN dry_run INTEGER NOT NULL DEFAULT 0;
    """,
]

BASE_MIGRATIONS: list[str] = [
    """
    CREATE TABLE leads (
        lead_id TEXT PRIMARY KEY, profile_url TEXT NOT NULL, url_key TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
        company TEXT NOT NULL, harvest_status TEXT, posts_found INTEGER, last_check_at TEXT, last_error TEXT,
        posts_actioned INTEGER, harvest_run_id TEXT, posts TEXT NOT NULL, created_at TEXT NOT NULL
    );
    CREATE INDEX leads_status ON leads(harvest_status);
    """,
    """
    ALTER TABLE leads ADD COLUMN next_check_at TEXT;
    CREATE INDEX leads_due ON leads(harvest_status, next_check_at);
    """,
]
