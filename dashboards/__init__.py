"""The Panel diagnostics dashboard (served by `leadkit dashboard`); it uses only the public `leadkit` API."""
