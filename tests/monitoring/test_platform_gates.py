"""The metrics gate in front of Prometheus, Alertmanager and oauth2-proxy, with the real binaries on loopback (R-SEC-5).

Each server runs on 127.0.0.1 behind nginx with the rendered gate configuration, through
monitoring/metrics_gate.sh, as in its container. Prometheus and Alertmanager keep their UI and API open
(operators, Prometheus → Alertmanager) and want the metrics token on their metrics paths, in any spelling;
oauth2-proxy's metrics server wants it on every path. A real Prometheus scrapes each gate with the token from its
file, is refused without it, and delivers an alert to Alertmanager through Alertmanager's gate.
"""

from __future__ import annotations

import copy
import json
import os
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from components import metrics_gate as gate
from components import monitoring_config as mc
from components import oauth2_proxy
from tests.monitoring.gate import nginx_bin, request
from tests.monitoring.support import REPO, Processes, http_get, prometheus_query, run, tool, wait_for
from tests.monitoring.test_config import settings_for
from tests.support.postgres import free_port

TOKEN = "Platform0gate" * 3
OAUTH2_PROXY_DEPS = REPO / "scripts" / "deps" / "oauth2-proxy.sh"
# Spellings nginx normalizes to a metrics path, or the server redirects to one: all want the token.
METRICS_SPELLINGS = ("/metrics", "/Metrics", "//metrics", "/%6detrics", "/./metrics", "/x/../metrics", "/metrics/")
WRONG = (None, "", f"Basic {TOKEN}", f"bearer {TOKEN}", f"Bearer {TOKEN.lower()}", f"Bearer {TOKEN}x")


@dataclass
class Server:
    url: str  # the gate
    upstream: int


def oauth2_proxy_bin() -> str:
    """The oauth2-proxy the image carries, as scripts/deps/oauth2-proxy.sh provides it."""
    done = run(["bash", "images/build.sh", "--oauth2-proxy-binary"], cwd=REPO)
    path = done.stdout.strip().splitlines()[-1] if done.returncode == 0 and done.stdout.strip() else ""
    if not path or not os.access(path, os.X_OK):
        pytest.fail(
            f"oauth2-proxy is not built; run {OAUTH2_PROXY_DEPS.relative_to(REPO)}. {done.stderr}", pytrace=False
        )
    return path


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    root = tmp_path_factory.mktemp("platform-gates")
    root.chmod(0o755)  # nginx's workers run as nobody when the tests run as root
    paths = mc.PATHS.under(root)
    for path, text in (
        (paths.metrics_token, TOKEN + "\n"),
        (paths.metrics_gate_token, gate.render_token(TOKEN)),
        (f"{root}/client_secret", "client-secret-of-the-test"),
    ):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    settings = settings_for("prod")
    ports = {name: free_port() for name in ("prometheus", "alertmanager", "oauth2_proxy_metrics", "oauth2_proxy")}
    upstreams = {name: free_port() for name in ("prometheus", "alertmanager", "oauth2_proxy_metrics")}
    env = {**os.environ, "NGINX_BIN": nginx_bin()}
    processes = Processes(root)

    def gated(name: str, service: str, argv: list[str], *, health_port: int | None = None) -> None:
        runtime = root / f"run-{name}"
        runtime.mkdir()
        config = root / f"gate-{name}.conf"
        config.write_text(
            mc.render_metrics_gate_config(
                service,
                ports[name],
                paths,
                listen_host="127.0.0.1",
                upstream_port=upstreams[name],
                health_port=health_port,
                runtime_dir=str(runtime),
            )
        )
        processes.start(name, ["bash", str(gate.SOURCE), str(config), "--", *argv], env=env)

    # The rendered scrape jobs, pointed at the gates, plus each without its token.
    rendered = yaml.safe_load(mc.render_prometheus_config(settings, paths))
    jobs = {job["job_name"]: job for job in rendered["scrape_configs"]}
    scrape_configs = []
    for job_name, listener in (
        ("prometheus", "prometheus"),
        ("alertmanager", "alertmanager"),
        ("oauth2_proxy", "oauth2_proxy_metrics"),
    ):
        job = jobs[job_name]
        job["static_configs"][0]["targets"] = [f"127.0.0.1:{ports[listener]}"]
        anonymous = copy.deepcopy(job)
        anonymous["job_name"] = f"{job_name}_without_token"
        del anonymous["authorization"]
        scrape_configs += [job, anonymous]
    rules = root / "rules.yml"
    rules.write_text(
        yaml.safe_dump({"groups": [{"name": "gate", "rules": [{"alert": "GateProbe", "expr": "vector(1)"}]}]})
    )
    fast = {"scrape_interval": "2s", "scrape_timeout": "2s", "evaluation_interval": "1s"}
    prometheus_config = root / "prometheus.yml"
    prometheus_config.write_text(
        yaml.safe_dump(
            {
                "global": rendered["global"] | fast,
                # Prometheus → Alertmanager through Alertmanager's gate, without a token, as in the stack.
                "alerting": {
                    "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{ports['alertmanager']}"]}]}]
                },
                "rule_files": [str(rules)],
                "scrape_configs": scrape_configs,
            }
        )
    )
    checked = run([tool("promtool"), "check", "config", str(prometheus_config)])
    assert checked.returncode == 0, checked.stdout + checked.stderr

    def on_loopback(argv: list[str], flag: str, port: int) -> list[str]:
        """The rendered command line with the test's files and the upstream port of this run."""
        out = [f"{flag}127.0.0.1:{port}" if part.startswith(flag) else part for part in argv]
        assert out != argv, f"{argv[0]} has no {flag}"
        return out

    prometheus_argv = on_loopback(mc.prometheus_argv(settings, paths), "--web.listen-address=", upstreams["prometheus"])
    prometheus_argv = [
        tool("prometheus")
        if i == 0
        else part.replace("/prometheus", str(root / "tsdb"), 1)
        if part.startswith("--storage.tsdb.path")
        else part
        for i, part in enumerate(prometheus_argv)
    ]
    prometheus_argv = [
        f"--config.file={prometheus_config}" if p.startswith("--config.file") else p for p in prometheus_argv
    ]
    alertmanager_config = root / "alertmanager.yml"
    alertmanager_config.write_text(mc.render_alertmanager_config(settings, paths))
    alertmanager_argv = on_loopback(
        mc.alertmanager_argv(settings, str(alertmanager_config)), "--web.listen-address=", upstreams["alertmanager"]
    )
    alertmanager_argv = [
        tool("alertmanager") if i == 0 else f"--storage.path={root / 'am'}" if p.startswith("--storage.path") else p
        for i, p in enumerate(alertmanager_argv)
    ]
    proxy_config = root / "oauth2-proxy.cfg"
    rendered_proxy = oauth2_proxy.render_oauth2_proxy_config(
        settings,
        issuer_url="https://flypotato.example.com/sso/realms/fly-potato-prod",
        keycloak_internal_url=f"http://127.0.0.1:{free_port()}/sso",
        client_id="oauth2-proxy",
    )
    assert f'metrics_address = "127.0.0.1:{oauth2_proxy.metrics_upstream_port(settings)}"' in rendered_proxy
    proxy_config.write_text(
        rendered_proxy.replace(
            f"127.0.0.1:{oauth2_proxy.metrics_upstream_port(settings)}",
            f"127.0.0.1:{upstreams['oauth2_proxy_metrics']}",
        )
        .replace(f"0.0.0.0:{settings.ports['oauth2_proxy']}", f"127.0.0.1:{ports['oauth2_proxy']}")
        .replace(oauth2_proxy.CLIENT_SECRET_FILE, f"{root}/client_secret")
    )
    try:
        gated("alertmanager", "alertmanager", alertmanager_argv)
        gated("prometheus", "prometheus", prometheus_argv)
        env_proxy = {**env, "OAUTH2_PROXY_COOKIE_SECRET": "0123456789abcdef0123456789abcdef"}
        processes.start(
            "oauth2_proxy_metrics",
            [
                "bash",
                str(gate.SOURCE),
                str(_proxy_gate(root, paths, ports, upstreams)),
                "--",
                oauth2_proxy_bin(),
                f"--config={proxy_config}",
            ],
            env=env_proxy,
        )
        started = {
            name: Server(f"http://127.0.0.1:{ports[name]}", upstreams[name])
            for name in ("prometheus", "alertmanager", "oauth2_proxy_metrics")
        }
        try:
            for name, server in started.items():
                wait_for(f"{name} behind its gate", lambda s=server: http_get(f"{s.url}/healthz")[0] == 200, timeout=60)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{processes.logs()}") from None
        yield started
    finally:
        processes.stop()


def _proxy_gate(root: Path, paths: mc.MonitoringPaths, ports: dict[str, int], upstreams: dict[str, int]) -> Path:
    runtime = root / "run-oauth2_proxy"
    runtime.mkdir()
    config = root / "gate-oauth2_proxy.conf"
    config.write_text(
        mc.render_metrics_gate_config(
            "oauth2_proxy",
            ports["oauth2_proxy_metrics"],
            paths,
            listen_host="127.0.0.1",
            upstream_port=upstreams["oauth2_proxy_metrics"],
            health_port=ports["oauth2_proxy"],
            runtime_dir=str(runtime),
        )
    )
    return config


def _raw(url: str, path: str, authorization: str | None = None) -> tuple[int, str]:
    """GET with the path sent as written (urllib would not normalize it either); redirects are not followed."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    headers = {"Authorization": authorization} if authorization is not None else {}
    try:
        with opener.open(urllib.request.Request(url + path, headers=headers), timeout=10) as response:  # noqa: S310
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


MARKERS = {
    "prometheus": "prometheus_build_info",
    "alertmanager": "alertmanager_build_info",
    "oauth2_proxy_metrics": "go_goroutines",
}


@pytest.mark.parametrize("name", sorted(MARKERS))
def test_metrics_need_the_bearer_token_in_every_spelling(servers: dict[str, Server], name: str) -> None:
    server = servers[name]
    for authorization in WRONG:
        status, headers, body = request(f"{server.url}/metrics", authorization)
        assert status == 401, f"{name}: {authorization!r} -> {status}"
        assert headers.get("WWW-Authenticate", "").startswith("Bearer"), headers
        assert MARKERS[name] not in body
    for path in METRICS_SPELLINGS:
        status, body = _raw(server.url, path)
        assert status == 401 and MARKERS[name] not in body, f"{name} {path} -> {status}"
    status, _, body = request(f"{server.url}/metrics", f"Bearer {TOKEN}")
    assert status == 200 and MARKERS[name] in body, f"{name}: {status} {body[:300]}"


def test_prometheus_federation_needs_the_token_and_its_ui_and_api_do_not(servers: dict[str, Server]) -> None:
    """/federate serves every series in the exposition format: a metrics endpoint. The query API and the UI are
    the operators' (published on loopback in dev only) and stay as they were."""
    url = servers["prometheus"].url
    for path in ("/federate?match[]=up", "/FEDERATE?match[]=up", "//federate?match[]=up"):
        status, body = _raw(url, path)
        assert status == 401 and "up{" not in body, f"{path} -> {status}"
    match = urllib.parse.quote('up{job="prometheus"}')
    wait_for(
        "Prometheus' own series to federate",
        lambda: (
            (answer := _raw(url, f"/federate?match[]={match}", f"Bearer {TOKEN}"))[0] == 200
            and 'job="prometheus"' in answer[1]
        ),
        timeout=60,
    )
    assert http_get(f"{url}/api/v1/query?query=up")[0] == 200
    assert http_get(f"{url}/graph")[0] == 200
    assert http_get(f"{url}/-/ready")[0] == 200


def test_alertmanager_api_stays_open_for_prometheus(servers: dict[str, Server]) -> None:
    url = servers["alertmanager"].url
    status, body = http_get(f"{url}/api/v2/status")
    assert status == 200 and "versionInfo" in body


def test_oauth2_proxy_metrics_server_wants_the_token_on_every_path(servers: dict[str, Server]) -> None:
    url = servers["oauth2_proxy_metrics"].url
    for path in ("/", "/ping", "/oauth2/start", "/anything"):
        assert _raw(url, path)[0] == 401, path


@pytest.mark.parametrize("name", sorted(MARKERS))
def test_healthz_is_open_and_carries_no_metrics(servers: dict[str, Server], name: str) -> None:
    status, _, body = request(f"{servers[name].url}/healthz")
    assert status == 200
    assert "# HELP" not in body and "# TYPE" not in body and MARKERS[name] not in body


def test_the_servers_listen_on_loopback_behind_their_gates(servers: dict[str, Server]) -> None:
    """What the gate hides is really there on the upstream, and only on 127.0.0.1 (the command lines say so)."""
    for name, server in servers.items():
        status, body = http_get(f"http://127.0.0.1:{server.upstream}/metrics")
        assert status == 200 and MARKERS[name] in body, name
    settings = settings_for("prod")
    assert "--web.listen-address=127.0.0.1:9999" in mc.prometheus_argv(settings)
    assert "--web.listen-address=127.0.0.1:9999" in mc.alertmanager_argv(settings, "/x.yml")


def test_prometheus_scrapes_each_gate_with_the_token_file_and_alerts_through_the_gate(
    servers: dict[str, Server],
) -> None:
    base = servers["prometheus"].url

    def scraped() -> dict[str, dict] | None:
        status, body = http_get(f"{base}/api/v1/targets")
        if status != 200:
            return None
        seen = {t["labels"]["job"]: t for t in json.loads(body)["data"]["activeTargets"]}
        return seen if len(seen) == 6 and all(t["health"] != "unknown" for t in seen.values()) else None

    seen = wait_for("every job scraped once", scraped, timeout=60)
    for job in ("prometheus", "alertmanager", "oauth2_proxy"):
        assert seen[job]["health"] == "up", seen[job]["lastError"]
        refused = seen[f"{job}_without_token"]
        assert refused["health"] == "down" and "401" in refused["lastError"], refused
    assert prometheus_query(base, 'prometheus_build_info{job="prometheus"}')
    assert prometheus_query(base, 'alertmanager_build_info{job="alertmanager"}')

    def delivered() -> list[dict] | None:
        status, body = http_get(f"{servers['alertmanager'].url}/api/v2/alerts")
        alerts = [a for a in json.loads(body) if a["labels"].get("alertname") == "GateProbe"] if status == 200 else []
        return alerts or None

    [alert] = wait_for("the alert in Alertmanager", delivered, timeout=60)
    # The link in the alert is Prometheus' address in the zone on its listener, not the loopback upstream.
    assert alert["generatorURL"].startswith("http://prometheus:9090/graph?"), alert["generatorURL"]
