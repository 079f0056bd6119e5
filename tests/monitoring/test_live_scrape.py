"""Live scrape on loopback: a real Prometheus scrapes the real backend's /metrics with the bearer token from a
file (and is refused without it), and the real sql_exporter with the rendered custom queries, against a
throwaway PostgreSQL with the roles and grants the program declares, migrated like a stack's database: the
exporter role reads the business metrics through the functions of schema metrics, with no right on a table."""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from components import monitoring_config as mc
from tests.app.conftest import DATABASE
from tests.app.test_privileges import deploy_declared
from tests.monitoring.support import REPO, Processes, http_get, prometheus_query, tool, wait_for
from tests.monitoring.test_config import settings_for
from tests.support.postgres import PostgresCluster, free_port, postgis_available, start_cluster_or_fail

TOKEN = "k" * 40


@pytest.fixture(scope="module")
def database() -> Iterator[PostgresCluster]:
    cluster = start_cluster_or_fail()
    try:
        if not postgis_available(cluster.pg_bin):
            pytest.fail("PostGIS is not installed; run scripts/deps/postgres.sh.", pytrace=False)
        # The roles and grants the program declares (the exporter's included), then the migrations.
        deploy_declared(cluster)
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="module")
def stack(database: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("live")
    processes = Processes(root)
    settings = settings_for("dev")
    paths = mc.PATHS.under(root)
    Path(paths.metrics_token).parent.mkdir(parents=True)
    Path(paths.metrics_token).write_text(TOKEN + "\n")
    ports = {name: free_port() for name in ("backend", "sql_exporter", "prometheus")}
    try:
        env = {key: value for key, value in os.environ.items() if not key.startswith("FLY_POTATO_")}
        env.update(
            {
                "FLY_POTATO_PROFILE": "dev",
                "FLY_POTATO_DATABASE_URL": database.dsn(DATABASE, user="app"),
                "FLY_POTATO_METRICS_TOKEN_FILE": paths.metrics_token,
                "PYTHONPATH": str(REPO),
            }
        )
        processes.start(
            "backend",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports["backend"]),
            ],
            env=env,
        )
        sql_config = root / "sql_exporter.yml"
        dsn = database.dsn(DATABASE, user="exporter", driver="postgres") + "?sslmode=disable"
        rendered_sql = mc.render_sql_exporter_config(settings, dsn)
        every = f"interval: {mc.SQL_JOB_INTERVAL_SECONDS}s"
        assert every in rendered_sql, rendered_sql
        sql_config.write_text(rendered_sql.replace(every, "interval: 1s"))
        processes.start(
            "sql_exporter",
            [
                tool("sql_exporter"),
                f"-config.file={sql_config}",
                f"-web.listen-address=127.0.0.1:{ports['sql_exporter']}",
            ],
        )

        # The rendered jobs, pointed at loopback; plus the backend job without its token.
        rendered = yaml.safe_load(mc.render_prometheus_config(settings, paths))
        jobs = {job["job_name"]: job for job in rendered["scrape_configs"]}
        backend = jobs["backend"]
        backend["static_configs"][0]["targets"] = [f"127.0.0.1:{ports['backend']}"]
        anonymous = copy.deepcopy(backend)
        anonymous["job_name"] = "backend_without_token"
        del anonymous["authorization"]
        sql = jobs["sql_exporter"]
        sql["static_configs"][0]["targets"] = [f"127.0.0.1:{ports['sql_exporter']}"]
        fast = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
        config = {"global": rendered["global"] | fast, "scrape_configs": [backend, anonymous, sql]}
        (root / "prometheus.yml").write_text(yaml.safe_dump(config))
        processes.start(
            "prometheus",
            [
                tool("prometheus"),
                f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
            ],
        )
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        try:
            wait_for("the backend", lambda: http_get(f"{urls['backend']}/healthz")[0] == 200)
            wait_for("prometheus", lambda: http_get(f"{urls['prometheus']}/-/ready")[0] == 200)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{processes.logs()}") from None
        yield urls
    finally:
        processes.stop()


def targets(prometheus: str) -> dict[str, dict]:
    import json

    status, body = http_get(f"{prometheus}/api/v1/targets")
    assert status == 200
    return {t["labels"]["job"]: t for t in json.loads(body)["data"]["activeTargets"]}


def test_backend_metrics_need_the_bearer_token(stack: dict[str, str]) -> None:
    assert http_get(f"{stack['backend']}/metrics")[0] in (401, 403)
    status, body = http_get(f"{stack['backend']}/metrics", token=TOKEN)
    assert status == 200 and "http_request_duration_seconds_bucket" in body


def test_prometheus_scrapes_the_backend_with_the_token_file_and_is_refused_without(stack: dict[str, str]) -> None:
    prometheus = stack["prometheus"]
    http_get(f"{stack['backend']}/api/does-not-exist")  # one request to count
    seen = wait_for(
        "both backend jobs scraped",
        lambda: (
            (t := targets(prometheus))
            and t["backend"]["health"] != "unknown"
            and t["backend_without_token"]["health"] != "unknown"
            and t
        ),
    )
    assert seen["backend"]["health"] == "up", seen["backend"]["lastError"]
    assert seen["backend_without_token"]["health"] == "down"
    assert "401" in seen["backend_without_token"]["lastError"] or "403" in seen["backend_without_token"]["lastError"]
    # The series the alert rules read exist under the names the rules use.
    series = wait_for("http_requests_total", lambda: prometheus_query(prometheus, 'http_requests_total{job="backend"}'))
    assert {"2xx", "4xx"} <= {s["metric"]["status_class"] for s in series}  # /healthz, the unknown route
    assert prometheus_query(prometheus, 'http_request_duration_seconds_bucket{job="backend"}')
    assert prometheus_query(prometheus, 'up{job="backend_without_token"} == 0')


def test_prometheus_scrapes_the_custom_sql_metrics(stack: dict[str, str]) -> None:
    prometheus = stack["prometheus"]
    flights = wait_for("sql_flypotato_flights", lambda: prometheus_query(prometheus, "sql_flypotato_flights"))
    assert {s["metric"].get("col") for s in flights} == {"total", "last_hour"}
    # The backend records a startup event when it starts: the ops-events query sees it by type.
    events = wait_for(
        "startup events",
        lambda: prometheus_query(prometheus, 'sql_flypotato_flow_events{event_type="startup", col="total"} >= 1'),
    )
    assert events
