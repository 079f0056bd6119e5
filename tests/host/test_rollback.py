"""scripts/rollback.sh: arguments, the dry-run plan, the config edit, and `alembic downgrade` for real
against a throwaway PostgreSQL migrated to head by the migrator role."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.platform import alembic_cli, prepare_database
from tests.support.postgres import PostgresCluster, postgis_available, start_cluster_or_fail

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "rollback.sh"
DIGEST = "registry.example/fly-potato/backend@sha256:" + "a" * 64


def rollback(*args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    full = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "DOCKER": "/bin/false", **env}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=full, input=stdin, timeout=300, check=False
    )


def head_at(ref: str) -> str:
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", ref, "migrations/versions/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    revisions, downs = set(), set()
    for name in names:
        text = subprocess.run(
            ["git", "show", f"{ref}:{name}"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        revisions |= set(re.findall(r'^revision[^=]*= *"([^"]+)"', text, re.M))
        downs |= set(re.findall(r'^down_revision[^=]*= *"([^"]+)"', text, re.M))
    (head,) = revisions - downs
    return head


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "scripts/rollback.sh STACK --to GIT_REF"),
        (("nope", "--to", "HEAD"), "Pulumi.nope.yaml does not exist"),
        (("dev", "--image", "x:1"), "needs --revision"),
        (("dev", "--revision", "0002"), "needs --image"),
        (("dev", "--to", "HEAD", "--image", "x:1"), "not both"),
        (("dev", "--to", "no-such-ref-xyz"), "is not a commit"),
        (("dev", "--image", "x:1", "--revision", "0002; rm -rf /"), "is not an alembic revision"),
        (("dev", "--image", "x:1", "--revision", "0002", "--via", "ssh"), "must be docker or local"),
        (("dev", "--image", "x:1", "--revision", "0002", "--via", "local"), "needs --migrator-url-file"),
        (("dev", "--image", "x:1", "--revision", "0002", "--step", "all"), "must be schema, config or deploy"),
        (("dev", "--image", "x:1", "--revision", "0002"), "pass --yes"),
    ],
)
def test_arguments_are_checked_before_anything_changes(args: tuple[str, ...], message: str) -> None:
    result = rollback(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr


def test_dry_run_shows_the_three_steps_for_the_previous_release() -> None:
    result = rollback("dev", "--to", "HEAD", "--dry-run")
    assert result.returncode == 0, result.stderr
    revision = head_at("HEAD")
    lines = result.stdout.splitlines()
    assert lines[0] == "rollback of stack dev: steps schema config deploy"
    assert f"  schema: alembic downgrade {revision} (via docker)" in lines
    schema = next(line for line in lines if line.startswith("[schema] would run"))
    assert "--network fly-potato-dev-data --user 10020:10020 --read-only" in schema
    assert "src=fly-potato-dev-migration-config,dst=/etc/fly-potato,readonly" in schema
    assert schema.endswith(f"alembic downgrade {revision}")
    assert (
        "[config] would set images.backend and images.migration to fly-potato/backend:0.1.0 in Pulumi.dev.yaml" in lines
    )
    assert "[deploy] would run: scripts/stack.sh up dev" in lines
    assert lines[-1] == "rollback of stack dev: schema config deploy planned"


def test_config_step_sets_both_images_and_nothing_else(tmp_path: Path) -> None:
    config = tmp_path / "Pulumi.prod.yaml"
    original = (ROOT / "Pulumi.prod.yaml").read_text()
    config.write_text(original)
    result = rollback("prod", "--image", DIGEST, "--step", "config", "--config", str(config), "--yes")
    assert result.returncode == 0, result.stderr
    changed = [(a, b) for a, b in zip(original.splitlines(), config.read_text().splitlines(), strict=True) if a != b]
    assert [b.strip() for _, b in changed] == [f"migration: {DIGEST}", f"backend: {DIGEST}"]
    again = rollback("prod", "--image", DIGEST, "--step", "config", "--config", str(config), "--yes")
    assert again.returncode == 0 and "already" in again.stdout


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PostgresCluster, Path]]:
    cluster = start_cluster_or_fail()
    if not postgis_available(cluster.pg_bin):
        cluster.remove()
        pytest.fail("PostGIS is not installed; run scripts/deps/postgres.sh.", pytrace=False)
    try:
        prepare_database(cluster, "rollback")
        url_file = tmp_path_factory.mktemp("secrets") / "migrator_url"
        url_file.write_text(cluster.dsn("rollback", user="migrator") + "\n")
        up = alembic_cli({"FLY_POTATO_MIGRATOR_URL_FILE": str(url_file)})
        assert up.returncode == 0, up.stderr
        yield cluster, url_file
    finally:
        cluster.remove()


# What the migrations make: tables, views and functions in the app's schemas (a downgrade takes some away).
SCHEMA_OBJECTS = """
SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('app', 'analytics', 'metrics') AND c.relkind IN ('r', 'v', 'm'))
     + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname IN ('app', 'analytics', 'metrics'))
"""


def schema_objects(cluster: PostgresCluster) -> str:
    return cluster.psql(SCHEMA_OBJECTS, "rollback")


def version(cluster: PostgresCluster) -> str:
    return cluster.psql("SELECT version_num FROM migrations.alembic_version", "rollback")


def test_schema_step_downgrades_as_the_migrator(migrated: tuple[PostgresCluster, Path]) -> None:
    cluster, url_file = migrated
    head = version(cluster)
    previous = f"{int(head) - 1:04d}"
    objects_before = schema_objects(cluster)
    result = rollback(
        "dev",
        "--revision",
        previous,
        "--step",
        "schema",
        "--via",
        "local",
        "--migrator-url-file",
        str(url_file),
        "--yes",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"[schema] {head} -> {previous}" in result.stdout and f"[schema] now at {previous}" in result.stdout
    assert version(cluster) == previous
    assert int(schema_objects(cluster)) < int(objects_before)
    # Idempotent: a second run finds the schema there already.
    again = rollback(
        "dev",
        "--revision",
        previous,
        "--step",
        "schema",
        "--via",
        "local",
        "--migrator-url-file",
        str(url_file),
        "--yes",
    )
    assert again.returncode == 0 and f"already at {previous}" in again.stdout
    assert version(cluster) == previous


def test_a_failing_downgrade_is_reported(migrated: tuple[PostgresCluster, Path]) -> None:
    _, url_file = migrated
    result = rollback(
        "dev", "--revision", "ffff", "--step", "schema", "--via", "local", "--migrator-url-file", str(url_file), "--yes"
    )
    assert result.returncode == 1
    assert "alembic downgrade ffff failed" in result.stderr
