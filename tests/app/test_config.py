"""Settings from environment, secret files and stack outputs; unsafe values refused outside dev;
the stack-output keys the app reads are keys the Pulumi program exports."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from app import contract
from app.config import MigratorSettings, Settings, SettingsError, get_settings, load_stack_outputs

STRONG_PASSWORD = "p" * 24
PROD_OUTPUTS = {
    "profile": "prod",
    "public_url": "https://flypotato.example.com",
    "database_url": f"postgresql://app:{STRONG_PASSWORD}@postgres:5433/flypotato",
    "migrator_url": f"postgresql://migrator:{STRONG_PASSWORD}@postgres:5433/flypotato",
    "keycloak_issuer_url": "https://flypotato.example.com/sso/realms/fly-potato-prod",
    "keycloak_jwks_url": "http://keycloak:8080/sso/realms/fly-potato-prod/protocol/openid-connect/certs",
    "oidc_client_id": "oauth2-proxy",
    "oidc_client_secret": "not-read-by-the-app",
    "cors_origins": ["https://flypotato.example.com"],
    "datalens_embed_origins": ["https://datalens.ru"],
    "datalens_dsn": "postgresql://datalens:x@host:5433/flypotato",
    "port_matrix": {"ignored": True},
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(contract.ENV_PREFIX):
            monkeypatch.delenv(name)
    get_settings.cache_clear()


def write(tmp_path: Path, name: str, content: str) -> str:
    path = tmp_path / name
    path.write_text(content)
    return str(path)


def test_dev_defaults() -> None:
    settings = Settings()
    assert settings.profile == "dev" and settings.listen_port == 8000 and settings.docs_enabled
    assert settings.async_database_url.startswith("postgresql+asyncpg://")


def test_stack_outputs_file_with_secret_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(contract.STACK_OUTPUTS_FILE_ENV, write(tmp_path, "outputs.json", json.dumps(PROD_OUTPUTS)))
    monkeypatch.setenv("FLY_POTATO_METRICS_TOKEN_FILE", write(tmp_path, "metrics", "t" * 40 + "\n"))
    settings = get_settings()
    assert settings.profile == "prod" and settings.listen_port == 80 and not settings.docs_enabled
    assert settings.metrics_token is not None and settings.metrics_token.get_secret_value() == "t" * 40
    assert settings.cors_origins == ["https://flypotato.example.com"]
    assert settings.async_migrator_url() == f"postgresql+asyncpg://migrator:{STRONG_PASSWORD}@postgres:5433/flypotato"
    masked = json.dumps(settings.masked(), default=str)
    assert STRONG_PASSWORD not in masked and "t" * 40 not in masked


def test_the_migration_container_needs_only_the_migrator_url_in_prod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The migration container gets the profile and the migrator URL file, nothing else: the backend's
    prod checks (public URL, metrics token, …) must not stop ``alembic upgrade``; a weak password still does."""
    url = f"postgresql://migrator:{STRONG_PASSWORD}@postgres:5433/flypotato"
    monkeypatch.setenv("FLY_POTATO_PROFILE", "prod")
    monkeypatch.setenv("FLY_POTATO_MIGRATOR_URL_FILE", write(tmp_path, "migrator_url", url + "\n"))
    with pytest.raises(ValidationError, match="public_url"):
        Settings()
    migrator = MigratorSettings()
    assert migrator.async_migrator_url() == f"postgresql+asyncpg://migrator:{STRONG_PASSWORD}@postgres:5433/flypotato"
    monkeypatch.setenv("FLY_POTATO_MIGRATOR_URL_FILE", write(tmp_path, "weak", "postgresql://migrator:changeme@db/x"))
    with pytest.raises(ValidationError, match="migrator_url: the database password is a placeholder"):
        MigratorSettings()
    monkeypatch.delenv("FLY_POTATO_MIGRATOR_URL_FILE")
    with pytest.raises(SettingsError, match="migrator_url: not set"):
        MigratorSettings().async_migrator_url()


def test_environment_beats_secret_files_beats_stack_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        contract.STACK_OUTPUTS_FILE_ENV,
        write(tmp_path, "o.json", json.dumps({"oidc_client_id": "from-stack", "public_url": "http://stack"})),
    )
    monkeypatch.setenv("FLY_POTATO_OIDC_CLIENT_ID_FILE", write(tmp_path, "cid", "from-file"))
    monkeypatch.setenv("FLY_POTATO_CORS_ORIGINS", "https://a.example, https://b.example/")
    settings = Settings()
    assert settings.oidc_client_id == "from-file" and settings.public_url == "http://stack"
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    monkeypatch.setenv("FLY_POTATO_OIDC_CLIENT_ID", "from-env")
    assert Settings().oidc_client_id == "from-env"


def test_pulumi_cli_is_used_for_a_named_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "pulumi"
    fake.write_text(
        "#!/bin/sh\n"
        f'[ "$*" = "stack output --json --show-secrets --stack org/fly-potato/prod" ] || exit 3\n'
        f"cat <<'JSON'\n{json.dumps(PROD_OUTPUTS)}\nJSON\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setenv(contract.STACK_NAME_ENV, "org/fly-potato/prod")
    assert load_stack_outputs()["profile"] == "prod"
    monkeypatch.setenv("FLY_POTATO_METRICS_TOKEN", "k" * 40)
    assert Settings().oidc_client_id == "oauth2-proxy"


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"database_url": "postgresql://app:postgres@postgres:5433/flypotato"}, "database_url"),
        ({"migrator_url": "postgresql://migrator:short@postgres:5433/flypotato"}, "migrator_url"),
        ({"metrics_token": "changeme"}, "metrics_token"),
        ({"cors_origins": ["*"]}, "cors_origins"),
        ({"public_url": "http://flypotato.example.com"}, "public_url"),
    ],
)
def test_placeholders_refused_outside_dev(override: dict[str, object], named: str) -> None:
    values = {k: v for k, v in PROD_OUTPUTS.items() if k in Settings.model_fields}
    values["metrics_token"] = "k" * 40
    values.update(override)
    with pytest.raises(ValidationError) as info:
        Settings(**values)  # type: ignore[arg-type]
    message = str(info.value)
    assert f"{named}:" in message
    assert "FILE" in message or "must be" in message or "list the allowed" in message


def test_missing_metrics_token_names_the_file_variable() -> None:
    values = {k: v for k, v in PROD_OUTPUTS.items() if k in Settings.model_fields}
    with pytest.raises(ValidationError, match="FLY_POTATO_METRICS_TOKEN_FILE"):
        Settings(**values)  # type: ignore[arg-type]


def test_placeholders_allowed_in_dev() -> None:
    assert (
        Settings(database_url="postgresql://app:postgres@localhost:5433/flypotato", metrics_token="x").profile == "dev"
    )


def test_unreadable_secret_file_is_a_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLY_POTATO_DATABASE_URL_FILE", "/nonexistent/secret")
    with pytest.raises(Exception, match="FLY_POTATO_DATABASE_URL_FILE points at '/nonexistent/secret'"):
        Settings()


def test_app_reads_only_keys_the_program_exports() -> None:
    """``components/outputs.py`` is the program's half of the contract (DESIGN: checked on both sides)."""
    from components import outputs

    exported = {value for name, value in vars(outputs).items() if name.isupper() and isinstance(value, str)}
    assert set(contract.APP_STACK_OUTPUT_KEYS) <= exported, set(contract.APP_STACK_OUTPUT_KEYS) - exported
    assert getattr(outputs, "SECRET_KEYS", contract.SECRET_STACK_OUTPUT_KEYS) >= contract.SECRET_STACK_OUTPUT_KEYS
    assert set(contract.APP_STACK_OUTPUT_KEYS) <= set(Settings.model_fields)
