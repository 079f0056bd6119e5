"""The release steps' commands (R-OPS-2), exactly as the stack renders them, run for real: the pre-deploy
backup and the migration gate against a stand-in `docker` CLI, the smoke step against real HTTP(S) servers."""

from __future__ import annotations

import http.server
import json
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from components.host_guardrails import host_script
from policy_plan.program import PlannedResource, ProgramGraph, evaluate_program, stack_config

STUB_DOCKER = r"""#!/usr/bin/env bash
echo "$*" >> "$STUB_LOG"
case "$1" in
  inspect) echo "${STUB_RUNNING:-true}" ;;
  ps) [[ -z "${STUB_TASKS:-}" ]] || printf '%s\n' $STUB_TASKS ;;  # the running tasks the label filter finds
  exec)  # like `docker exec`, a single process: a timeout that kills it leaves nothing behind
    [[ "${STUB_SLEEP:-0}" == 0 ]] || exec sleep "$STUB_SLEEP"
    echo "dump set 20260101T023000Z written"; exit "${STUB_EXIT:-0}" ;;
  logs) echo "alembic.util.exc.CommandError: relation app.flights does not exist" ;;
  *) exit 64 ;;
esac
"""


@pytest.fixture(scope="module")
def release_graph() -> ProgramGraph:
    graph = evaluate_program("dev", {"host_ports.nginx_http": free_port(), "host.smoke_timeout_seconds": 10})
    assert graph.error is None, graph.error
    return graph


@pytest.fixture
def docker(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run a command string as local.Command does, with the stand-in docker first on PATH."""
    (tmp_path / "bin").mkdir()
    stub = tmp_path / "bin" / "docker"
    stub.write_text(STUB_DOCKER)
    stub.chmod(0o755)
    log = tmp_path / "docker.log"
    log.touch()

    def run(command: str, **env: str) -> subprocess.CompletedProcess[str]:
        full = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "STUB_LOG": str(log), **env}
        result = subprocess.run(
            ["/bin/bash", "-c", command], capture_output=True, text=True, env=full, timeout=60, check=False
        )
        result.docker_calls = log.read_text().splitlines()  # type: ignore[attr-defined]
        return result

    return run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- pre-deploy backup ----------------------------------------------------------------------------------


def test_backup_runs_the_dump_in_the_backup_container(release_graph: ProgramGraph, docker) -> None:  # type: ignore[no-untyped-def]
    result = docker(release_graph.by_name("release-backup").prop("create"))
    assert result.returncode == 0, result.stderr
    assert result.docker_calls == [
        "inspect --format {{.State.Running}} fly-potato-dev-backup",
        "exec fly-potato-dev-backup python3 -m backup dump",
    ]
    assert "dump set 20260101T023000Z written" in result.stdout and "pre-deploy backup done" in result.stdout


def test_a_failed_backup_stops_the_release(release_graph: ProgramGraph, docker) -> None:  # type: ignore[no-untyped-def]
    result = docker(release_graph.by_name("release-backup").prop("create"), STUB_EXIT="1")
    assert result.returncode == 1
    assert "pre-deploy backup failed (exit 1)" in result.stderr and "no migration ran" in result.stderr


def test_a_stopped_backup_service_stops_the_release(release_graph: ProgramGraph, docker) -> None:  # type: ignore[no-untyped-def]
    result = docker(release_graph.by_name("release-backup").prop("create"), STUB_RUNNING="false")
    assert result.returncode == 1 and "is not running" in result.stderr
    assert not [call for call in result.docker_calls if call.startswith("exec")]


def test_a_slow_backup_hits_its_timeout(docker) -> None:  # type: ignore[no-untyped-def]
    command = host_script("predeploy-backup.sh", "--container", "fly-potato-dev-backup", "--timeout", "1", timeout=30)
    started = time.monotonic()
    result = docker(command, STUB_SLEEP="20")
    assert result.returncode == 1 and "did not finish within 1s" in result.stderr
    assert time.monotonic() - started < 10


def test_the_outer_timeout_bounds_any_host_command(docker) -> None:  # type: ignore[no-untyped-def]
    command = host_script("predeploy-backup.sh", "--container", "b", "--timeout", "60", timeout=1)
    started = time.monotonic()
    result = docker(command, STUB_SLEEP="20")
    assert result.returncode == 124 and time.monotonic() - started < 15


# --- pre-deploy backup on a swarm: the backup service's running task on the data node ---------------------

SWARM_TASK = "fly-potato-dev-backup.1.q3v9x2k0c1mzt8rj5w7n4b6yd"
SWARM_LOOKUP = (
    "ps --filter label=com.docker.swarm.service.name=fly-potato-dev-backup --filter status=running --format {{.Names}}"
)


@pytest.fixture(scope="module")
def swarm_backup() -> PlannedResource:
    """The pre-deploy step of the dev stack on a swarm with backups on, as the program renders it."""
    digest = "ab" * 32
    overrides: dict[str, object] = {
        "target": "swarm",
        "swarm.docker_host": "unix:///run/fly-potato-swarm/node1.sock",
        "swarm.data_docker_host": "unix:///run/fly-potato-swarm/node2.sock",
        "publish.nginx_http": "none",  # R-NET-3: dev on a swarm publishes nothing
        "features.monitoring": False,
        "features.backups": True,
    }
    for name in stack_config("dev")["images"]:
        repository = "backend" if name == "migration" else name
        overrides[f"images.{name}"] = f"198.18.232.1:5000/fly-potato/{repository}@sha256:{digest}"
    graph = evaluate_program("dev", overrides)
    assert graph.error is None, graph.error
    return graph.by_name("release-backup")


def test_on_a_swarm_the_dump_runs_in_the_backup_task_found_by_its_service_label(swarm_backup, docker) -> None:  # type: ignore[no-untyped-def]
    assert swarm_backup.prop("environment") == {"DOCKER_HOST": "unix:///run/fly-potato-swarm/node2.sock"}
    result = docker(swarm_backup.prop("create"), STUB_TASKS=f"{SWARM_TASK} fly-potato-dev-backup.1.older")
    assert result.returncode == 0, result.stderr
    assert result.docker_calls == [
        SWARM_LOOKUP,
        f"inspect --format {{{{.State.Running}}}} {SWARM_TASK}",
        f"exec {SWARM_TASK} python3 -m backup dump",
    ]
    assert f"backup service fly-potato-dev-backup: task {SWARM_TASK}" in result.stdout
    assert "dump set 20260101T023000Z written" in result.stdout and "pre-deploy backup done" in result.stdout


def test_on_a_swarm_no_running_backup_task_stops_the_release(swarm_backup, docker) -> None:  # type: ignore[no-untyped-def]
    result = docker(swarm_backup.prop("create"), DOCKER_HOST="unix:///run/fly-potato-swarm/node2.sock")
    assert result.returncode == 1
    assert (
        "no running task of backup service fly-potato-dev-backup on unix:///run/fly-potato-swarm/node2.sock; "
        "the release stops before migrations" in result.stderr
    )
    assert result.docker_calls == [SWARM_LOOKUP]


def test_on_a_swarm_a_failed_dump_stops_the_release(swarm_backup, docker) -> None:  # type: ignore[no-untyped-def]
    result = docker(swarm_backup.prop("create"), STUB_TASKS=SWARM_TASK, STUB_EXIT="2")
    assert result.returncode == 1 and "pre-deploy backup failed (exit 2)" in result.stderr


@pytest.mark.parametrize(
    ("words", "error"),
    [
        (["--service", "s", "--container", "c"], "give --container or --service, not both"),
        (["--service", "bad name"], "--service 'bad name' is not a service name"),
        (["--service", ""], "--service '' is not a service name"),
        ([], "--container '' is not a container name"),
    ],
)
def test_the_backup_target_is_one_container_or_one_service(docker, words: list[str], error: str) -> None:  # type: ignore[no-untyped-def]
    result = docker(host_script("predeploy-backup.sh", *words, timeout=30))
    assert result.returncode == 2 and result.stderr.startswith(f"predeploy-backup: {error}")
    assert result.docker_calls == []


def test_a_dry_run_on_a_swarm_asks_docker_nothing(docker) -> None:  # type: ignore[no-untyped-def]
    result = docker(host_script("predeploy-backup.sh", "--service", "b", "--timeout", "5", "--dry-run", timeout=30))
    assert result.returncode == 0 and result.docker_calls == []
    assert result.stdout == "would run (timeout 5s): docker exec <running task of b> python3 -m backup dump\n"


# --- migration gate -------------------------------------------------------------------------------------


def gate_command(exit_code: str) -> str:
    return host_script(
        "migration-gate.sh", "--container", "fly-potato-dev-migration", "--exit-code", exit_code, timeout=60
    )  # host.command_timeout_seconds


def test_the_gate_passes_a_clean_migration(release_graph: ProgramGraph, docker) -> None:  # type: ignore[no-untyped-def]
    rendered = release_graph.by_name("release-migration-gate").prop("create")
    assert rendered == gate_command(""), "under mocks the exit code is unset; the command is otherwise the stack's"
    result = docker(gate_command("0"))
    assert result.returncode == 0 and "exited 0; the backend may be replaced" in result.stdout
    assert result.docker_calls == []


def test_the_gate_fails_a_failed_migration_with_its_logs(docker) -> None:  # type: ignore[no-untyped-def]
    result = docker(gate_command("3"))
    assert result.returncode == 1
    assert "relation app.flights does not exist" in result.stderr, "the migration's own error is shown"
    assert "exited 3; the backend was not replaced and the previous one keeps serving" in result.stderr


def test_the_gate_fails_without_an_exit_code(release_graph: ProgramGraph, docker) -> None:  # type: ignore[no-untyped-def]
    result = docker(release_graph.by_name("release-migration-gate").prop("create"))
    assert result.returncode == 1 and "reported no exit code" in result.stderr


# --- smoke ----------------------------------------------------------------------------------------------


class Readiness(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[list[tuple[int, str]]] = []
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(f"{self.headers['Host']} {self.path}")
        code, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        self.send_response(code)
        if code == 302:
            self.send_header("Location", "/oauth2/sign_in")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


READY = json.dumps({"status": "ready", "database": "ok", "migration": "0003"})
NOT_READY = json.dumps({"status": "not ready", "database": "unavailable"})


@pytest.fixture
def server(release_graph: ProgramGraph) -> Iterator[Callable[..., None]]:
    command = release_graph.by_name("release-smoke").prop("create")
    port = int(command.split("--resolve localhost:")[1].split(":")[0])
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Readiness)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def answers(*items: tuple[int, str]) -> None:
        Readiness.answers = list(items)
        Readiness.seen = []

    yield answers
    httpd.shutdown()
    httpd.server_close()


def test_smoke_waits_until_ready(release_graph: ProgramGraph, server, docker) -> None:  # type: ignore[no-untyped-def]
    server((503, NOT_READY), (503, NOT_READY), (200, READY))
    result = docker(release_graph.by_name("release-smoke").prop("create"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ready after 3 attempt(s)" in result.stdout and '"migration": "0003"' in result.stdout
    assert {line.split(" ")[1] for line in Readiness.seen} == {"/health/ready"}


def test_smoke_fails_the_release_when_never_ready(release_graph: ProgramGraph, server, docker) -> None:  # type: ignore[no-untyped-def]
    server((302, ""))
    started = time.monotonic()
    result = docker(release_graph.by_name("release-smoke").prop("create"))
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert "was not ready within 10s" in result.stderr and "HTTP 302" in result.stderr
    assert "nginx may be sending /health/ready to sign-in" in result.stderr
    assert 9 <= elapsed < 20


def test_smoke_trusts_the_stack_ca_given_on_stdin(tmp_path: Path, docker) -> None:  # type: ignore[no-untyped-def]
    ca_key, ca_pem = tmp_path / "ca.key", tmp_path / "ca.pem"
    key, csr, cert = tmp_path / "srv.key", tmp_path / "srv.csr", tmp_path / "srv.pem"
    ext = tmp_path / "ext.cnf"
    ext.write_text("subjectAltName=DNS:flypotato.example.com\n")
    for argv in (
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            ca_key,
            "-out",
            ca_pem,
            "-days",
            "2",
            "-subj",
            "/CN=stack CA",
        ],
        [
            "openssl",
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            csr,
            "-subj",
            "/CN=flypotato.example.com",
        ],
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca_pem,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-out",
            cert,
            "-days",
            "2",
            "-extfile",
            ext,
        ],
    ):
        subprocess.run([str(a) for a in argv], check=True, capture_output=True, timeout=60)
    port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Readiness)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    Readiness.answers = [(200, READY)]
    try:
        args = [
            "--url",
            f"https://flypotato.example.com:{port}/health/ready",
            "--resolve",
            f"flypotato.example.com:{port}:127.0.0.1",
        ]
        trusted = host_script("smoke.sh", *args, "--timeout", "10", "--cacert-stdin", timeout=40)
        result = subprocess.run(
            ["bash", "-c", trusted], input=ca_pem.read_text(), capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        untrusted = host_script("smoke.sh", *args, "--timeout", "2", "--interval", "1", timeout=40)
        result = subprocess.run(
            ["bash", "-c", untrusted],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "SSL_CERT_FILE": "/dev/null"},
        )
        assert result.returncode == 1 and "certificate" in result.stdout + result.stderr
    finally:
        httpd.shutdown()
        httpd.server_close()
