"""Settings: environment, secret files and Pulumi stack outputs, validated once.

Sources, highest priority first:

1. keyword arguments (tests);
2. environment variables ``FLY_POTATO_<FIELD>`` (lists as JSON or comma-separated);
3. secret files named by ``FLY_POTATO_<FIELD>_FILE`` (e.g. ``FLY_POTATO_DATABASE_URL_FILE``,
   ``FLY_POTATO_METRICS_TOKEN_FILE``, ``FLY_POTATO_DATALENS_PRIVATE_KEY_FILE``);
4. Pulumi stack outputs (keys in :mod:`app.contract`): the JSON file named by
   ``FLY_POTATO_STACK_OUTPUTS``, or ``pulumi stack output --json --show-secrets --stack NAME``
   when ``FLY_POTATO_STACK=NAME``;
5. defaults, which suit the dev profile only: outside dev, placeholder or weak secrets are
   refused with a sentence naming the setting and the fix.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import make_url

from app import contract

PLACEHOLDER_SECRETS = frozenset(
    {
        "",
        "admin",
        "app",
        "changeme",
        "change-me",
        "change_me",
        "example",
        "password",
        "placeholder",
        "postgres",
        "secret",
        "test",
        "token",
        "xxx",
    }
)
MIN_PASSWORD_LENGTH = 16
MIN_TOKEN_LENGTH = 32
DASHBOARDS = ("overview", "regions", "time")


class SettingsError(ValueError):
    """A setting is missing or unsafe; the message names the setting and the fix."""


class SecretFilesSource(PydanticBaseSettingsSource):
    """``FLY_POTATO_<FIELD>_FILE=/run/secrets/x`` → the file's content (trailing newline stripped)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in self.settings_cls.model_fields:
            path = os.environ.get(f"{contract.ENV_PREFIX}{name.upper()}_FILE")
            if not path:
                continue
            try:
                values[name] = Path(path).read_text().rstrip("\n")
            except OSError as exc:
                raise SettingsError(
                    f"{contract.ENV_PREFIX}{name.upper()}_FILE points at {path!r}, which cannot be read "
                    f"({exc.strerror}); mount the secret file there or unset the variable."
                ) from exc
        return values


class StackOutputsSource(PydanticBaseSettingsSource):
    """The Pulumi stack outputs the app reads (:data:`app.contract.APP_STACK_OUTPUT_KEYS`)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        outputs = load_stack_outputs()
        return {key: outputs[key] for key in contract.APP_STACK_OUTPUT_KEYS if outputs.get(key) is not None}


def load_stack_outputs() -> dict[str, Any]:
    """Stack outputs from ``FLY_POTATO_STACK_OUTPUTS`` (a JSON file) or ``FLY_POTATO_STACK`` (pulumi CLI)."""
    path = os.environ.get(contract.STACK_OUTPUTS_FILE_ENV)
    if path:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise SettingsError(
                f"{contract.STACK_OUTPUTS_FILE_ENV}={path!r} is not a readable JSON file ({exc}); write it with "
                "`pulumi stack output --json --show-secrets > FILE` or unset the variable."
            ) from exc
        if not isinstance(data, dict):
            raise SettingsError(f"{contract.STACK_OUTPUTS_FILE_ENV}={path!r} must hold a JSON object of stack outputs.")
        return data
    stack = os.environ.get(contract.STACK_NAME_ENV)
    if not stack:
        return {}
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        raise SettingsError(
            f"{contract.STACK_NAME_ENV}={stack!r} needs the pulumi CLI on PATH; install it or export the outputs "
            f"to a file and set {contract.STACK_OUTPUTS_FILE_ENV} instead."
        )
    result = subprocess.run(
        [pulumi, "stack", "output", "--json", "--show-secrets", "--stack", stack],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=os.environ.get("FLY_POTATO_PULUMI_CWD") or None,
    )
    if result.returncode != 0:
        raise SettingsError(
            f"`pulumi stack output --stack {stack}` failed: {result.stderr.strip()[:300]}; check "
            f"{contract.STACK_NAME_ENV} and that you are logged in to the Pulumi backend."
        )
    data = json.loads(result.stdout or "{}")
    return data if isinstance(data, dict) else {}


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


StrList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Everything the backend is configured with; see the module docstring for the sources."""

    model_config = SettingsConfigDict(env_prefix=contract.ENV_PREFIX, extra="ignore", frozen=True)

    # -- from the stack outputs (app.contract) -----------------------------------------
    profile: Literal["dev", "prod"] = "dev"
    public_url: str = "http://localhost"
    database_url: SecretStr = SecretStr("postgresql://app@localhost:5433/flypotato")
    migrator_url: SecretStr | None = None
    keycloak_issuer_url: str = "http://localhost:8080/sso/realms/fly-potato-dev"
    keycloak_jwks_url: str = "http://localhost:8080/sso/realms/fly-potato-dev/protocol/openid-connect/certs"
    oidc_client_id: str = "oauth2-proxy"
    cors_origins: StrList = Field(default_factory=list)
    datalens_embed_origins: StrList = Field(
        default_factory=lambda: ["https://datalens.ru", "https://datalens.yandex.cloud"]
    )

    # -- the process ---------------------------------------------------------------------
    app_title: str = "Fly Potato"
    listen_host: str = "0.0.0.0"
    port: int | None = Field(default=None, ge=1, le=65535, description="dev 8000, prod 80 unless set")
    log_level: str = "info"

    # -- secrets (files) -----------------------------------------------------------------
    metrics_token: SecretStr | None = None
    datalens_private_key: SecretStr | None = None
    datalens_key_id: str | None = None

    # -- DataLens embeds (R-APP-3) -------------------------------------------------------
    datalens_embed_ids: dict[str, str] = Field(default_factory=dict, description="dashboard → embed id")
    datalens_embed_base_url: str = "https://datalens.ru/embeds/dash"
    datalens_token_ttl_seconds: int = Field(default=300, ge=30, le=3600)

    # -- auth ------------------------------------------------------------------------------
    admin_group: str = "admins"
    analyst_group: str = "analysts"
    jwks_cache_seconds: int = Field(default=300, ge=10)
    token_leeway_seconds: int = Field(default=30, ge=0, le=300)

    # -- database and imports --------------------------------------------------------------
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=5, ge=0)
    db_statement_timeout_ms: int = Field(default=30_000, ge=100)
    ready_timeout_seconds: float = Field(default=2.0, gt=0)
    import_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    import_max_rows: int = Field(default=200_000, ge=1)
    import_max_errors: int = Field(default=100, ge=1)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, SecretFilesSource(settings_cls), StackOutputsSource(settings_cls))

    @field_validator("cors_origins", "datalens_embed_origins", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("cors_origins", "datalens_embed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        return [origin.rstrip("/") for origin in value]

    @field_validator("datalens_embed_ids")
    @classmethod
    def _dashboards(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(DASHBOARDS))
        if unknown:
            raise ValueError(f"unknown dashboards {unknown}; use {list(DASHBOARDS)}")
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_outside_dev(self) -> Settings:
        if self.profile == "dev":
            return self
        problems = list(self._unsafe_settings())
        if problems:
            raise SettingsError(" ".join(problems))
        return self

    def _unsafe_settings(self) -> list[str]:
        p = contract.ENV_PREFIX
        problems: list[str] = []
        for name in ("database_url", "migrator_url"):
            secret = getattr(self, name)
            if secret is None:
                continue
            password = make_url(secret.get_secret_value()).password or ""
            if password.lower() in PLACEHOLDER_SECRETS or len(password) < MIN_PASSWORD_LENGTH:
                problems.append(
                    f"{name}: the database password is a placeholder or shorter than {MIN_PASSWORD_LENGTH} characters "
                    f"in profile {self.profile!r}; use the generated stack output or {p}{name.upper()}_FILE."
                )
        token = self.metrics_token.get_secret_value() if self.metrics_token else ""
        if token.lower() in PLACEHOLDER_SECRETS or len(token) < MIN_TOKEN_LENGTH:
            problems.append(
                f"metrics_token: missing or shorter than {MIN_TOKEN_LENGTH} characters in profile {self.profile!r}; "
                f"write a random token (`openssl rand -hex 32`) to a file and set {p}METRICS_TOKEN_FILE."
            )
        if "*" in self.cors_origins:
            problems.append(f"cors_origins: '*' is refused in profile {self.profile!r}; list the allowed origins.")
        if not self.public_url.startswith("https://"):
            problems.append(f"public_url: {self.public_url!r} must be https:// in profile {self.profile!r}.")
        if not self.keycloak_issuer_url.startswith("https://"):
            problems.append(
                f"keycloak_issuer_url: {self.keycloak_issuer_url!r} must be https:// in profile {self.profile!r}."
            )
        if self.datalens_private_key is not None and not self.datalens_key_id:
            problems.append(
                f"datalens_key_id: a DataLens private key is configured without its key id; set {p}DATALENS_KEY_ID."
            )
        return problems

    # -- derived ---------------------------------------------------------------------------

    @property
    def listen_port(self) -> int:
        """Port the server binds: prod 80 (needs net.ipv4.ip_unprivileged_port_start=0 as non-root)."""
        if self.port is not None:
            return self.port
        return 8000 if self.profile == "dev" else 80

    @property
    def docs_enabled(self) -> bool:
        """/docs and /openapi.json exist only in dev (R-APP-1)."""
        return self.profile == "dev"

    @property
    def async_database_url(self) -> str:
        return to_asyncpg_url(self.database_url.get_secret_value())

    def async_migrator_url(self) -> str:
        return _async_migrator_url(self.migrator_url)

    def masked(self) -> dict[str, Any]:
        """Settings safe to log: secrets and URL passwords masked."""
        out: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                raw = value.get_secret_value()
                out[name] = mask_url(raw) if "://" in raw else "***"
            else:
                out[name] = value
        return out


class MigratorSettings(BaseSettings):
    """What ``alembic upgrade`` needs, and nothing else: the migration container gets only the migrator
    role's URL, so it must not be held to the serving backend's settings (public URL, metrics token, …)."""

    model_config = SettingsConfigDict(env_prefix=contract.ENV_PREFIX, extra="ignore", frozen=True)

    profile: Literal["dev", "prod"] = "dev"
    migrator_url: SecretStr | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return Settings.settings_customise_sources(
            settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
        )

    @model_validator(mode="after")
    def _refuse_weak_password_outside_dev(self) -> MigratorSettings:
        if self.profile != "dev" and self.migrator_url is not None:
            password = make_url(self.migrator_url.get_secret_value()).password or ""
            if password.lower() in PLACEHOLDER_SECRETS or len(password) < MIN_PASSWORD_LENGTH:
                raise SettingsError(
                    f"migrator_url: the database password is a placeholder or shorter than {MIN_PASSWORD_LENGTH} "
                    f"characters in profile {self.profile!r}; use the generated stack output or "
                    f"{contract.ENV_PREFIX}MIGRATOR_URL_FILE."
                )
        return self

    def async_migrator_url(self) -> str:
        return _async_migrator_url(self.migrator_url)


def _async_migrator_url(url: SecretStr | None) -> str:
    if url is None:
        raise SettingsError(
            f"migrator_url: not set; migrations run as the migrator role — set {contract.ENV_PREFIX}MIGRATOR_URL, "
            f"{contract.ENV_PREFIX}MIGRATOR_URL_FILE, or the migrator_url stack output."
        )
    return to_asyncpg_url(url.get_secret_value())


def to_asyncpg_url(url: str) -> str:
    """``postgresql://…`` (the stack output form) → ``postgresql+asyncpg://…`` for SQLAlchemy."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def mask_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "***"


@lru_cache
def get_settings() -> Settings:
    return Settings()


def get_migrator_settings() -> MigratorSettings:
    return MigratorSettings()
