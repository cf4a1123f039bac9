"""Settings from the environment, then a `.env` file in the working directory, then the workspace's `.env`
(`<LEADKIT_HOME>/.env`, written by `leadkit init`): the first place that sets a variable wins.

Secrets are `SecretStr`: they print as `**********` and never reach a notebook parameter, a log line,
a record or a page. Kernels read them from their own environment, which the batch passes on.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from leadkit.durations import parse_duration
from leadkit.errors import ConfigError

#: Names of the settings that hold secrets; tests set canary values for each of them.
SECRET_SETTINGS = ("airtable_api_key", "apify_token")
#: Every kind of alert; each can be switched off in LEADKIT_ALERTS_OFF.
ALERT_KINDS = (
    "batch_failed",
    "credential_bad",
    "stale_swept",
    "lease_takeover",
    "lease_lost",
    "lease_held",
    "silence",
    "silent_client",
)


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
    airtable_progress_save_s: float = Field(
        300.0,
        ge=0,
        description="How long a Running ClientRun's progress may wait to share one Airtable request with the next "
        "save or heartbeat of it (at most a third of LEADKIT_STALE_AFTER_S; kept in the workspace meanwhile: a "
        "killed process loses none of it); 0: each at once.",
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


class AlertSettings(BaseSettings):
    """Alert settings, read from the same places as `Settings` but kept apart from them, so that no kernel or
    notebook parameter ever receives the channel URLs."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_file_encoding="utf-8")

    leadkit_alert_urls: SecretStr | None = Field(
        None,
        description="Alert channels: Apprise URLs, comma- or space-separated (mailto://user:pass@host?to=ADDRESS, "
        "slack://..., pbul://TOKEN, json://host:port/path). Secret: each URL may carry a token.",
    )
    leadkit_alert_window: str = Field("6h", description="One alert per kind and fingerprint or client per window.")
    leadkit_max_silence: str = Field("3h", description="`leadkit watch` alerts when no batch finished for this long.")
    leadkit_silent_after: str = Field("72h", description="A client with no posts for this long, after some, alerts.")
    leadkit_alerts_off: str = Field(
        "", description=f"Alert kinds switched off, comma-separated: {', '.join(ALERT_KINDS)}."
    )
    leadkit_dashboard_url: str = Field(
        "", description="The dashboard's address as operators reach it (https://...), linked from every alert."
    )

    @field_validator("leadkit_alert_window", "leadkit_max_silence", "leadkit_silent_after")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("leadkit_alerts_off")
    @classmethod
    def _kinds(cls, value: str) -> str:
        unknown = [k for k in value.replace(",", " ").split() if k not in ALERT_KINDS]
        if unknown:
            raise ValueError(f"unknown alert kind(s) {', '.join(unknown)}; accepted: {', '.join(ALERT_KINDS)}")
        return value

    @property
    def window(self) -> timedelta:
        return parse_duration(self.leadkit_alert_window)

    @property
    def max_silence(self) -> timedelta:
        return parse_duration(self.leadkit_max_silence)

    @property
    def silent_after(self) -> timedelta:
        return parse_duration(self.leadkit_silent_after)

    @property
    def off(self) -> set[str]:
        return set(self.leadkit_alerts_off.replace(",", " ").split())


class DashboardSettings(BaseSettings):
    """The dashboard's login, read from the same places as `Settings` (never from the command line by default:
    an argument shows in `ps` to every user of the host)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_file_encoding="utf-8")

    leadkit_dashboard_auth: SecretStr | None = Field(
        None,
        description="USER:PASSWORD that `leadkit dashboard` asks for on every page (a login form). Secret.",
    )


#: The settings classes whose variables `.env` files hold, in the order `env_template` lists them.
SETTINGS_CLASSES: tuple[type[BaseSettings], ...] = (Settings, AlertSettings, DashboardSettings)

WORKSPACE_ENV_FILE = ".env"

S = TypeVar("S", bound=BaseSettings)


class _Home(BaseSettings):
    """LEADKIT_HOME alone, from the environment and ./.env: where the workspace's .env is."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_file_encoding="utf-8")

    leadkit_home: Path = Path("runs")


def env_files(home: Path | str | None = None) -> tuple[Path, ...]:
    """The `.env` files read, lowest precedence first: the workspace's (`home`, default LEADKIT_HOME as the
    environment and ./.env set it), then ./.env. The environment wins over both."""
    if home is None:
        home = _Home().leadkit_home
    workspace_env = Path(home) / WORKSPACE_ENV_FILE
    if not workspace_env.is_file() or workspace_env.resolve() == Path(WORKSPACE_ENV_FILE).resolve():
        return (Path(WORKSPACE_ENV_FILE),)
    return (workspace_env, Path(WORKSPACE_ENV_FILE))


def load(cls: type[S], home: Path | str | None = None, **overrides: object) -> S:
    """Settings of `cls` from the environment, then ./.env, then the workspace's .env (`home`, default
    LEADKIT_HOME). A value that does not validate is a ConfigError naming the variable; a secret's value is
    never shown."""
    from pydantic import ValidationError

    try:
        files = env_files(home)
        # later files win in pydantic-settings, and the environment wins over every file
        return cls(_env_file=files, **overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise settings_error(exc) from None
    except OSError as exc:
        raise ConfigError(
            f"the settings could not be read: {exc}",
            hint="Check that .env (in this folder and in the workspace) is a readable text file.",
        ) from None


def get_settings(**overrides: object) -> Settings:
    """Read the settings now (not cached: tests and kernels change the environment).

    A value that does not validate is a ConfigError naming the variable and what it got."""
    home = overrides.get("leadkit_home")
    return load(Settings, home if isinstance(home, str | Path) else None, **overrides)


#: Setting names whose values are never shown, not even in a validation error.
_SECRET_SUFFIXES = ("api_key", "token", "alert_urls", "dashboard_auth")


def settings_error(exc: Any) -> ConfigError:
    """A ConfigError naming each setting that does not validate."""
    problems = (
        "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ())).upper() or '(settings)'}={err.get('input')!r}: "
            f"{err.get('msg', '')}"
            for err in exc.errors()
            if not str(err.get("loc", ("",))[0]).endswith(_SECRET_SUFFIXES)
        )
        or "a secret setting does not validate"
    )
    return ConfigError(
        f"the settings do not validate: {problems}",
        hint="Fix the named variable in the environment, ./.env or the workspace's .env "
        "(`leadkit init` writes a commented template).",
    )


def scrub(text: str, secrets: list[str] | None = None) -> str:
    """Replace any secret value found in `text` (a last line of defence for logs and messages)."""
    values = secrets if secrets is not None else _env_secret_values()
    for value in values:
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def _env_secret_values() -> list[str]:
    return [v for k in SECRET_SETTINGS if (v := os.environ.get(k.upper(), ""))]


def env_template() -> str:
    """A commented `.env` listing every setting with its meaning and default (what `leadkit init` writes)."""
    lines = [
        "# leadkit settings for this workspace. Uncomment and fill in what you need.",
        "# Precedence: the environment, then ./.env in the folder you run leadkit from, then this file.",
        "# Secrets (tokens, alert channel URLs, the dashboard login) stay here or in the environment: they never",
        "# reach a notebook, a log or a record. Keep this file private (chmod 600 .env).",
        "",
    ]
    for cls in SETTINGS_CLASSES:
        for name, info in cls.model_fields.items():
            if name == "leadkit_home":
                continue  # this file lives in the workspace; LEADKIT_HOME points here from outside
            default = info.default
            shown = "" if default is None else str(default)
            lines.append(f"# {info.description}")
            lines.append(f"# {name.upper()}={shown}")
            lines.append("")
    return "\n".join(lines)
