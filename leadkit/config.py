"""Settings from the environment (and a `.env` file in the working directory).

Secrets are `SecretStr`: they print as `**********` and never reach a notebook parameter, a log line,
a record or a page. Kernels read them from their own environment, which the batch passes on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Names of the settings that hold secrets; tests set canary values for each of them.
SECRET_SETTINGS = ("airtable_api_key", "apify_token")


class Settings(BaseSettings):
    """Every setting leadkit reads. Environment variable names are the upper-case field names."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_file_encoding="utf-8")

    leadkit_home: Path = Field(Path("runs"), description="The workspace: sqlite files, executed notebooks, logs.")
    leadkit_store: str = Field(
        "", description="Where records live: empty or sqlite:// for SQLite in the workspace, airtable://<base id>."
    )
    airtable_api_key: SecretStr | None = Field(None, description="Airtable personal access token.")
    airtable_endpoint_url: str = Field("https://api.airtable.com", description="Airtable API root.")
    airtable_timeout_s: float = Field(30.0, gt=0, description="Read timeout of every Airtable request.")
    airtable_rate_limit_wait_s: float = Field(
        31.0, ge=0, description="How long to wait after a 429 without Retry-After (Airtable's penalty is 30 s)."
    )
    airtable_max_requests_per_s: float = Field(
        4.0, gt=0, description="Pace of requests to one Airtable base, shared by every process on this machine."
    )
    airtable_token_max_requests_per_s: float = Field(
        45.0, gt=0, description="Pace of all requests of the token across bases (Airtable allows 50 a second)."
    )
    leadkit_airtable_plan: Literal["free", "team", "business", "enterprise"] = Field(
        "team", description="The Airtable workspace plan the budget is shown against: free, team, business, enterprise."
    )
    apify_token: SecretStr | None = Field(None, description="Apify API token.")
    apify_api_url: str = Field("https://api.apify.com", description="Apify API root, without the version.")
    apify_actor_id: str = Field("harvestapi~linkedin-profile-posts", description="Actor that harvests posts.")
    apify_max_wait_s: float = Field(600.0, gt=0, description="Longest total wait for one actor run.")
    apify_timeout_s: float = Field(75.0, gt=0, description="Read timeout of one Apify request.")
    leadkit_refresh_after: str = Field(
        "7d", description="A Done lead is harvested again (newer posts only) this long after its last check."
    )
    leadkit_no_posts_recheck: str = Field(
        "14d", description="A No Posts lead is checked again this long after the check that found none."
    )
    apify_max_concurrent_runs: int | None = Field(
        None, ge=1, description="Apify runs in flight across a batch (default: the account's free capacity, else 8)."
    )
    leadkit_concurrency: int | None = Field(
        None, ge=1, description="Clients a batch runs at once (default: available memory / 300 MB, 8 to 32)."
    )
    leadkit_stale_after_s: float = Field(
        900.0, gt=0, description="A Running record whose heartbeat is older than this is Stale."
    )

    def secret_values(self) -> list[str]:
        """The plain values of every secret that is set (for scrubbing and for tests)."""
        values = []
        for name in SECRET_SETTINGS:
            secret = getattr(self, name)
            if secret is not None and secret.get_secret_value():
                values.append(secret.get_secret_value())
        return values


def get_settings(**overrides: object) -> Settings:
    """Read the settings now (not cached: tests and kernels change the environment)."""
    return Settings(**overrides)  # type: ignore[arg-type]


def scrub(text: str, secrets: list[str] | None = None) -> str:
    """Replace any secret value found in `text` (a last line of defence for logs and messages)."""
    values = secrets if secrets is not None else _env_secret_values()
    for value in values:
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def _env_secret_values() -> list[str]:
    return [v for k in SECRET_SETTINGS if (v := os.environ.get(k.upper(), ""))]
