"""Real nginx with the rendered config: syntax (dev and prod), routes, headers, limits and the DataLens
TCP proxy on loopback (R-TLS-5, R-AUTH-2, R-NET-6, R-SEC-1)."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.nginx_conf import render_nginx_conf
from components.settings import parse_settings
from policy_plan.program import stack_config
from tests.edge.conftest import DOMAIN, SESSION_COOKIE, STUB_TOKEN, RunningEdge, layout_under, make_pki


@pytest.mark.parametrize(
    ("stack", "overrides"),
    [
        ("dev", {}),
        ("prod", {}),
        ("prod", {"datalens.allow_list": ["203.0.113.0/24"], "host_ports.datalens": 15433}),
        ("prod", {"edge.csp_extra": {"connect-src": ["https://sentry.example.com"]}}),
    ],
    ids=["dev", "prod", "prod-datalens", "prod-csp-extra"],
)
def test_nginx_accepts_the_rendered_config(
    nginx_bin: str, tmp_path: Path, stack: str, overrides: dict[str, Any]
) -> None:
    """The container's config as rendered (Docker names, catalog ports, resolver), files moved to tmp_path."""
    tmp_path.chmod(0o755)
    make_pki(tmp_path)
    layout = layout_under(tmp_path, loopback_upstreams=False)
    settings = parse_settings(stack_config(stack, overrides), stack=stack)
    Path(layout.conf).write_text(render_nginx_conf(settings, layout=layout, ocsp_stapling=False))
    result = subprocess.run(
        [nginx_bin, "-t", "-e", layout.error_log, "-c", layout.conf], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


# --- clients ------------------------------------------------------------------------------------------


def https(
    edge: RunningEdge,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    source: str = "127.0.0.1",
) -> http.client.HTTPResponse:
    context = ssl.create_default_context(cafile=str(edge.pki.ca))
    context.check_hostname = False  # loopback address; the chain is still verified against the test CA
    connection = http.client.HTTPSConnection(
        "127.0.0.1", edge.https_port, context=context, timeout=10, source_address=(source, 0)
    )
    connection.request(method, path, body=body, headers={"Host": DOMAIN, **(headers or {})})
    response = connection.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    connection.close()
    return response


def body_of(response: http.client.HTTPResponse) -> dict[str, Any]:
    return json.loads(response.body)  # type: ignore[attr-defined]


# --- port 80 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/api/flights?page=2", "/healthz", "/sso/realms/x"])
def test_http_answers_only_301_to_https(edge: RunningEdge, path: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", edge.http_port, timeout=10)
    connection.request("GET", path, headers={"Host": "attacker.example"})
    response = connection.getresponse()
    response.read()
    assert response.status == 301
    # The configured domain, never the client's Host header.
    assert response.getheader("Location") == f"https://{DOMAIN}:{edge.https_port}{path}"


# --- Keycloak paths -----------------------------------------------------------------------------------


def test_sso_realms_is_proxied_to_keycloak_with_forwarded_headers_overwritten(edge: RunningEdge) -> None:
    realm = edge.settings.realm
    response = https(
        edge,
        "GET",
        f"/sso/realms/{realm}/.well-known/openid-configuration",
        {
            "X-Forwarded-For": "198.51.100.66",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "http",
            "Forwarded": "for=198.51.100.66",
        },
    )
    assert response.status == 200
    seen = body_of(response)
    assert seen["upstream"] == "keycloak" and seen["path"] == f"/sso/realms/{realm}/.well-known/openid-configuration"
    headers = seen["headers"]
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-host"] == DOMAIN and headers["host"] == DOMAIN
    assert headers["x-forwarded-port"] == str(edge.https_port)
    assert "forwarded" not in headers


def test_sso_resources_is_proxied(edge: RunningEdge) -> None:
    response = https(edge, "GET", "/sso/resources/abc/login/keycloak.v2/css/styles.css")
    assert response.status == 200 and body_of(response)["upstream"] == "keycloak"


@pytest.mark.parametrize(
    "path",
    [
        "/sso/realms/{realm}/protocol/openid-connect/auth?client_id=c&redirect_uri=https%3A%2F%2Fx%2F&state=a:b",
        "/sso/realms/{realm}/login-actions/authenticate?session_code=s&execution=e&tab_id=t",
        "/sso/realms/{realm}/protocol/openid-connect/certs",
        "/sso/resources/abc12/login/keycloak.v2/css/styles.css?v=1",
    ],
)
def test_the_stacks_realm_and_resources_reach_keycloak_as_sent(edge: RunningEdge, path: str) -> None:
    path = path.format(realm=edge.settings.realm)
    response = https(edge, "GET", path)
    assert response.status == 200 and body_of(response) == {**body_of(response), "upstream": "keycloak", "path": path}


# R-AUTH-2: the admin realm and every other realm, in any spelling, never reach Keycloak through the edge.
HOSTILE_SSO_PATHS = [
    "/sso/admin/",
    "/sso/admin/master/console/",
    "/sso/",
    "/sso",
    "/sso/health/ready",
    "/sso/metrics",
    "/sso/realms/master",
    "/sso/realms/master/",
    "/sso/realms/master?x=1",
    "/sso/realms/master/.well-known/openid-configuration",
    "/sso/realms/master/protocol/openid-connect/auth",
    "/sso/realms/master/protocol/openid-connect/token",
    "/sso/realms/Master",
    "/sso/realms/MASTER/",
    "/sso/realms/%6Daster",
    "/sso/realms/%6daster/",
    "/sso/realms/ma%73ter/protocol/openid-connect/certs",
    "/sso/realms/master.",
    "/sso/realms/master./",
    "/sso/realms/master%2F",
    "/sso/realms//master",
    "/sso/realms//master/",
    "/sso//realms/master",
    "//sso/realms/master",
    "/sso/realms/./master",
    "/sso/realms/{realm}/../master",
    "/sso/realms/{realm}/../master/",
    "/sso/realms/{realm}/..;/master/",
    "/sso/realms/{realm}/%2e%2e/master/",
    "/sso/realms/{realm}//../master/",
    "/sso/realms/{realm}/./../master/",
    "/sso/realms/{realm}/../../admin/",
    "/sso/realms/{realm}/..%2F..%2Fadmin/",
    "/sso/realms/%2e%2e/admin/",
    "/sso/realms/{realm}%2F..%2Fmaster",
    "/sso/realms/{realm}",
    "/sso/realms/{realm}x/",
    "/sso/realms/{realm}./",
    "/sso/realms/%7Brealm%7D/",
    "/sso/realms/other-realm/",
    "/sso/resources/../realms/master/",
    "/sso/resources/%2e%2e/realms/master",
    "/sso/resources/x/../../realms/master",
    "/SSO/realms/master/",
    "/sso/REALMS/master/",
]


@pytest.mark.parametrize("path", HOSTILE_SSO_PATHS)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_no_spelling_of_another_realm_or_the_admin_reaches_keycloak(edge: RunningEdge, path: str, method: str) -> None:
    path = path.replace("{realm}", edge.settings.realm)
    before = len(edge.stubs["keycloak"].seen)
    response = https(edge, method, path, body=b"" if method == "POST" else None)
    # 301: only the stack's realm without its trailing slash, sent to the slash by nginx itself.
    assert response.status in (301, 302, 400, 401, 404), (path, response.status)
    assert len(edge.stubs["keycloak"].seen) == before, f"{path} reached Keycloak"


# --- auth_request -------------------------------------------------------------------------------------


def test_api_without_a_session_answers_401_json(edge: RunningEdge) -> None:
    before = len(edge.stubs["backend"].seen)
    response = https(edge, "GET", "/api/flights")
    assert response.status == 401
    assert json.loads(response.body)["detail"]  # type: ignore[attr-defined]
    assert len(edge.stubs["backend"].seen) == before


def test_readiness_reaches_the_backend_without_a_session(edge: RunningEdge) -> None:
    before = len(edge.stubs["backend"].seen)
    response = https(edge, "GET", "/health/ready")
    assert response.status == 200
    assert edge.stubs["backend"].seen[before:][-1].path == "/health/ready"
    # Only the exact path: anything below it is still behind sign-in.
    assert https(edge, "GET", "/health/ready/x").status == 302


def test_pages_without_a_session_redirect_to_sign_in(edge: RunningEdge) -> None:
    response = https(edge, "GET", "/dashboard?tab=2&from=2024-01-01&to=2024-01-31")
    assert response.status == 302
    assert "/sso/realms/" in response.getheader("Location", "")
    sign_in = edge.stubs["oauth2_proxy"].seen[-1]
    # The page goes to oauth2-proxy whole, as a header, never as a query parameter its & would split.
    assert sign_in.path == "/oauth2/sign_in"
    assert sign_in.headers["x-auth-request-redirect"] == "/dashboard?tab=2&from=2024-01-01&to=2024-01-31"


def test_api_with_a_session_gets_identity_from_auth_request_only(edge: RunningEdge) -> None:
    response = https(
        edge,
        "GET",
        "/api/flights",
        {
            "Cookie": SESSION_COOKIE,
            "X-Auth-Request-User": "admin",
            "X-Auth-Request-Email": "admin@evil.example",
            "X-Forwarded-Access-Token": "forged",
            "Authorization": "Bearer forged",
        },
    )
    assert response.status == 200
    headers = body_of(response)["headers"]
    assert headers["x-auth-request-user"] == "analyst"
    assert headers["x-auth-request-email"] == "analyst@example.com"
    assert headers["x-auth-request-access-token"] == STUB_TOKEN
    assert headers["authorization"] == f"Bearer {STUB_TOKEN}"
    assert "x-forwarded-access-token" not in headers
    assert "cookie" not in headers, "the session cookie stays at the edge"


def test_auth_endpoint_is_internal(edge: RunningEdge) -> None:
    assert https(edge, "GET", "/oauth2/auth").status == 404


def test_security_headers_on_app_responses(edge: RunningEdge) -> None:
    response = https(edge, "GET", "/api/flights", {"Cookie": SESSION_COOKIE})
    assert response.getheader("Strict-Transport-Security") == "max-age=63072000; includeSubDomains"
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    assert response.getheader("Referrer-Policy") == "strict-origin-when-cross-origin"
    csp = response.getheader("Content-Security-Policy", "")
    assert "frame-ancestors 'self' https://datalens.yandex.ru" in csp
    assert response.getheader("Server") == "nginx", "no version"


def test_body_size_limit(edge: RunningEdge) -> None:
    response = https(
        edge,
        "POST",
        "/api/imports/flights",
        {"Cookie": SESSION_COOKIE, "Content-Type": "application/octet-stream"},
        body=b"x" * (2 * 1024 * 1024),
    )
    assert response.status == 413


def test_api_rate_limit(edge: RunningEdge) -> None:
    # Its own source address, so its bucket is not shared with the other tests' requests.
    statuses = [
        https(edge, "GET", "/api/regions", {"Cookie": SESSION_COOKIE}, source="127.0.0.3").status for _ in range(25)
    ]
    assert statuses[0] == 200 and statuses.count(429) >= 5


def test_access_log_carries_no_codes_or_tokens(edge: RunningEdge) -> None:
    https(edge, "GET", "/oauth2/callback?code=SECRET-CODE-123&state=STATE-456", {"Referer": "https://x/?t=REF"})
    https(edge, "GET", "/api/flights", {"Cookie": SESSION_COOKIE, "Authorization": "Bearer BEARER-789"})
    log = edge.access_log()
    assert "/oauth2/callback" in log
    for secret in ("SECRET-CODE-123", "STATE-456", "REF", "BEARER-789", STUB_TOKEN, "valid-session"):
        assert secret not in log


# --- DataLens TCP proxy -------------------------------------------------------------------------------


def _exchange(source: str, port: int) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        try:
            sock.sendall(b"ping-from-" + source.encode())
            return sock.recv(64)
        except (ConnectionResetError, BrokenPipeError):
            return b""


def test_datalens_proxy_passes_allow_listed_sources(edge: RunningEdge) -> None:
    assert _exchange("127.0.0.1", edge.datalens_port) == b"ping-from-127.0.0.1"


def test_datalens_proxy_refuses_a_source_outside_the_allow_list(edge: RunningEdge) -> None:
    assert _exchange("127.0.0.2", edge.datalens_port) == b""
    assert '"client":"127.0.0.2","status":403' in edge.access_log()
