"""The prod profile through the real Pulumi engine: a throwaway stack ``e2e-prod-live`` with the prod
hardening, its images pinned to the local image ids (R-SEC-3), DNS preflight off (no public DNS here) and
nginx published on 443 and 80 of a routable address of this host — the host end of a veth pair whose other
end is a network namespace, the "outside" every public check connects from. Operator listeners (postgres,
keycloak) get free loopback ports. Up from nothing, checked from outside, previewed with no change,
rotated, destroyed. ``make e2e``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.e2e import checks
from tests.e2e.checks import Live
from tests.e2e.engine import (
    ROOT,
    EngineStack,
    firewall_rules,
    fit_to_this_host,
    free_ports,
    leftovers,
    local_image_ids,
    published_bindings,
    purge,
)
from tests.e2e.outside import HOST_ADDRESS, PEER_ADDRESS, Outside
from tests.edge.conftest import sslyze_bin  # noqa: F401 - the edge tier's pinned sslyze, as a fixture

pytestmark = pytest.mark.e2e
STACK = "e2e-prod-live"
DOMAIN = "flypotato.example.com"  # the committed prod domain; clients pin it to the veth address
RETAINED_VOLUMES = ("pgdata", "backups", "wal-archive", "prometheus-data", "alertmanager-data")


@pytest.fixture(scope="module")
def outside() -> Iterator[Outside]:
    try:
        namespace = Outside.create()
    except Exception as error:
        pytest.fail(str(error), pytrace=False)
    yield namespace
    Outside.remove()


def _prod_stack() -> EngineStack:
    postgres, keycloak = free_ports(2)
    overrides: dict[str, Any] = {
        "features.dns_preflight": False,
        "public_bind_address": HOST_ADDRESS,
        **local_image_ids(),
        **fit_to_this_host(),
    }
    ports = {"nginx_https": 443, "nginx_http": 80, "postgres": postgres, "keycloak": keycloak}
    return EngineStack(STACK, base="prod", overrides=overrides, ports=ports)


@pytest.fixture(scope="module")
def prod(outside: Outside) -> Iterator[Live]:
    yield from checks.bring_up(_prod_stack, STACK)


def _https(outside: Outside, path: str, *, method: str = "GET", port: int = 443) -> dict[str, Any]:
    """One request from outside, with the domain pinned to the public address: status, headers, body head."""
    script = (
        "import http.client, json, ssl, sys\n"
        f"scheme, port, path, method = {('https' if port == 443 else 'http')!r}, {port}, {path!r}, {method!r}\n"
        "if scheme == 'https':\n"
        "    context = ssl._create_unverified_context()\n"
        f"    conn = http.client.HTTPSConnection({HOST_ADDRESS!r}, port, timeout=10, context=context)\n"
        "else:\n"
        f"    conn = http.client.HTTPConnection({HOST_ADDRESS!r}, port, timeout=10)\n"
        f"conn.request(method, path, headers={{'Host': {DOMAIN!r}}})\n"
        "r = conn.getresponse()\n"
        "body = r.read(65536).decode('utf-8', 'replace')\n"
        "print(json.dumps({'status': r.status, 'headers': {k.lower(): v for k, v in r.getheaders()}, 'body': body}))\n"
    )
    done = outside.run("python3", "-c", script, timeout=30)
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


# -- the containers -------------------------------------------------------------------------------------------


def test_every_long_running_container_is_healthy(prod: Live) -> None:
    checks.assert_every_long_running_container_is_healthy(prod)


def test_hardening_applies_and_only_nginx_is_on_the_public_address(prod: Live) -> None:
    checks.assert_hardened(prod, public_address=HOST_ADDRESS)


def test_images_are_pinned_to_the_local_image_ids(prod: Live) -> None:
    """R-SEC-3: every container runs exactly the image id the stack pins."""
    pinned = local_image_ids()
    for service, resource in prod.graph.containers().items():
        wanted = pinned[f"images.{service}"]
        assert resource.prop("image") == wanted, service
        assert (
            subprocess.run(
                ["docker", "inspect", "-f", "{{.Image}}", resource.prop("name")],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            == wanted
        ), service


# -- the public edge, from outside -------------------------------------------------------------------------------


def test_tls_is_1_2_and_1_3_only_with_hsts(prod: Live, outside: Outside, sslyze_bin: str) -> None:  # noqa: F811
    """R-TLS-1, R-TLS-2 by sslyze from outside: SSL 2/3, TLS 1.0/1.1 refused; 1.2 and 1.3 accepted; HSTS."""
    done = outside.run(
        sslyze_bin,
        "--json_out=-",
        "--sslv2",
        "--sslv3",
        "--tlsv1",
        "--tlsv1_1",
        "--tlsv1_2",
        "--tlsv1_3",
        "--http_headers",
        f"{DOMAIN}:443{{{HOST_ADDRESS}}}",
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    scan = json.loads(done.stdout)["server_scan_results"][0]
    assert scan["scan_status"] == "COMPLETED", scan.get("connectivity_error_trace")
    results = scan["scan_result"]
    accepted = {
        name: len(results[name]["result"]["accepted_cipher_suites"])
        for name in (
            "ssl_2_0_cipher_suites",
            "ssl_3_0_cipher_suites",
            "tls_1_0_cipher_suites",
            "tls_1_1_cipher_suites",
            "tls_1_2_cipher_suites",
            "tls_1_3_cipher_suites",
        )
    }
    assert {k for k, v in accepted.items() if v} == {"tls_1_2_cipher_suites", "tls_1_3_cipher_suites"}, accepted
    hsts = results["http_headers"]["result"]["strict_transport_security_header"]
    assert hsts is not None and hsts["max_age"] >= 31536000 and hsts["include_subdomains"], hsts


def test_port_80_answers_only_301_to_https(prod: Live, outside: Outside) -> None:
    """R-TLS-5: whatever is asked on port 80, the answer is a 301 to the same path over HTTPS."""
    for method, path in (
        ("GET", "/"),
        ("GET", "/api/regions"),
        ("POST", "/oauth2/start"),
        ("HEAD", "/health/ready"),
        ("GET", "/sso/realms/x"),
    ):
        answer = _https(outside, path, method=method, port=80)
        assert answer["status"] == 301, (method, path, answer)
        assert answer["headers"]["location"] == f"https://{DOMAIN}{path}", (method, path, answer)


def test_only_the_public_listeners_are_reachable_from_outside(prod: Live, outside: Outside) -> None:
    """R-NET-1/R-NET-2: the stack's containers publish nginx's 443 and 80 on the routable address and the
    operator listeners on loopback, nothing else; ``ss -ltn`` shows each of them listening and nothing but 443 and
    80 on the routable address; and a client outside reaches exactly 443 and 80. The stack's listeners are told
    by Docker's bindings of its own containers, so a dev stack on the same machine (its nginx on 127.0.0.1:80)
    is not counted."""
    expected = {
        f"{HOST_ADDRESS}:443",
        f"{HOST_ADDRESS}:80",
        f"127.0.0.1:{prod.ports['postgres']}",
        f"127.0.0.1:{prod.ports['keycloak']}",
    }
    assert published_bindings(STACK) == expected
    listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout.split("\n")
    local = {line.split()[3] for line in listening if line.strip()}
    assert expected <= local, expected - local
    on_the_routable_address = {address for address in local if address.startswith(f"{HOST_ADDRESS}:")}
    assert on_the_routable_address == {f"{HOST_ADDRESS}:443", f"{HOST_ADDRESS}:80"}, on_the_routable_address
    reachable = {name for name, port in prod.ports.items() if outside.connects(HOST_ADDRESS, port)}
    assert reachable == {"nginx_https", "nginx_http"}, reachable


def test_keycloaks_admin_console_never_answers_through_the_edge(prod: Live, outside: Outside) -> None:
    """R-AUTH-2: the admin console exists on Keycloak's operator port, and the edge never reaches it, nor the
    master realm."""
    direct = requests.get(f"http://127.0.0.1:{prod.ports['keycloak']}/sso/admin/", timeout=10, allow_redirects=False)
    assert direct.status_code in (200, 302, 303), direct.status_code  # it is there, on the operator listener
    for path in ("/sso/admin/", "/sso/admin/master/console/", "/sso/admin/realms/master"):
        answer = _https(outside, path)
        assert answer["status"] == 404, (path, answer["status"])
        assert "keycloak" not in answer["body"].lower(), path
    # Nor does Keycloak's own realm, in any spelling; the stack's realm does answer.
    for path in ("/sso/realms/master", "/sso/realms/MASTER/", "/sso/realms/%6Daster/", "/sso/realms/x/../master/"):
        answer = _https(outside, path)
        assert answer["status"] in (400, 404), (path, answer["status"])
        assert "public_key" not in answer["body"], path
    realm = prod.graph.by_name("auth-identity-realm").prop("realm")
    own = _https(outside, f"/sso/realms/{realm}/.well-known/openid-configuration")
    assert own["status"] == 200 and f"/sso/realms/{realm}" in json.loads(own["body"])["issuer"], own["status"]


def test_the_platform_is_ready_through_tls_from_outside(prod: Live, outside: Outside) -> None:
    answer = _https(outside, "/health/ready")
    assert answer["status"] == 200 and json.loads(answer["body"])["status"] == "ready", answer
    assert _https(outside, "/api/regions")["status"] in (302, 401)  # not signed in


def test_the_egress_zone_reaches_the_allowed_ports_only(prod: Live, outside: Outside) -> None:
    """R-NET-5 on the host: prod's DOCKER-USER chain lets the egress zone (here the backup service) reach a
    host out there on an allowed port (object storage, 443) and rejects every other port (removed by
    destroy, checked at the end)."""
    rules = firewall_rules(STACK)
    assert any(r.startswith("-A DOCKER-USER") for r in rules), rules
    servers = [outside.serve(port) for port in (443, 8443)]
    # An HTTP answer from the namespace's own server proves the packets went there and nowhere else.
    probe = (
        "import http.client\n"
        "for port in (443, 8443):\n"
        "    try:\n"
        f"        conn = http.client.HTTPConnection({PEER_ADDRESS!r}, port, timeout=5)\n"
        "        conn.request('HEAD', '/')\n"
        "        print(port, conn.getresponse().getheader('Server', '').split('/')[0])\n"
        "    except OSError as error:\n"
        "        print(port, type(error).__name__)\n"
    )
    try:
        done = subprocess.run(
            ["docker", "exec", prod.container("backup"), "python3", "-c", probe],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    finally:
        for server in servers:
            server.terminate()
    answers = dict(line.split() for line in done.stdout.splitlines())
    assert answers == {"443": "SimpleHTTP", "8443": "ConnectionRefusedError"}, answers


# -- secrets, idempotence, rotation, teardown -------------------------------------------------------------------


def test_no_generated_secret_in_plaintext_state_container_config_or_engine_output(prod: Live) -> None:
    checks.assert_no_generated_secret_in_plaintext(prod)


def test_a_second_up_changes_nothing(prod: Live) -> None:
    checks.assert_a_second_up_changes_nothing(prod)


def test_rotation_replaces_the_secrets_and_the_platform_serves_again(prod: Live, outside: Outside) -> None:
    def ready() -> tuple[int, str]:
        answer = _https(outside, "/health/ready")
        return answer["status"], answer["body"]

    checks.assert_rotation_replaces_the_secrets(prod, ready)


def test_zz_destroy_refuses_the_protected_data_then_leaves_only_the_retained_volumes(
    prod: Live, outside: Outside
) -> None:
    """Prod protects its realm and database. ``make destroy`` refuses before touching anything (the engine
    alone would delete the rest first and stop at them) and names the way out, ``pulumi state unprotect``;
    the platform keeps serving. Unprotected on purpose, nothing of the stack is left, firewall chain
    included, but the data volumes prod retains on delete."""
    done = subprocess.run(
        ["bash", "scripts/stack.sh", "destroy", STACK],
        cwd=ROOT,
        env={**os.environ, **prod.engine.env, "YES": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "auth-identity-realm" in done.stderr and "pulumi state unprotect" in done.stderr, done.stderr
    assert _https(outside, "/health/ready")["status"] == 200, "a refused destroy took the platform down"
    prod.engine.cli("state", "unprotect", "--all", "--yes")
    prod.engine.destroy()
    left = leftovers(STACK)
    assert left["containers"] == left["networks"] == left["firewall_rules"] == [], left
    names = subprocess.run(
        ["docker", "volume", "inspect", "-f", "{{.Name}}", *left["volumes"]], capture_output=True, text=True, check=True
    ).stdout.split()
    # retain_on_delete in prod: the data outlives the stack until an operator removes it.
    assert sorted(names) == sorted(f"fly-potato-{STACK}-{v}" for v in RETAINED_VOLUMES), names
    purge(STACK)
    assert leftovers(STACK) == {"containers": [], "networks": [], "volumes": [], "firewall_rules": []}
