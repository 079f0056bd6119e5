"""The edge as the program declares it: certificates (R-TLS-4), nginx config (R-TLS-1…3, R-TLS-5, R-AUTH-2,
R-NET-6), oauth2-proxy config (R-AUTH-1) and the DNS preflight (R-OPS-1). Real nginx: tests/edge."""

from __future__ import annotations

import base64
import os
import re
import resource
import runpy
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from components import preflight
from components.nginx_conf import MOZILLA_INTERMEDIATE_CIPHERS, render_nginx_conf
from components.oauth2_proxy import (
    CLIENT_SECRET_FILE,
    CONFIG_FILE,
    COOKIE_SECRET_FILE,
    START,
    render_oauth2_proxy_config,
)
from components.server_certificate import names_ocsp_responder
from components.settings import Settings, SettingsError, parse_settings
from policy_plan.program import ROOT, ProgramGraph, evaluate_program, is_secret, stack_config

# Throwaway self-signed certificates (public data): one names an OCSP responder, one only a CA issuer URL.
CERT_WITH_OCSP = """-----BEGIN CERTIFICATE-----
MIICGDCCAb6gAwIBAgIUWksio9AG2XnIUPpiiOMkDMoR0JQwCgYIKoZIzj0EAwIw
IDEeMBwGA1UEAwwVZmx5cG90YXRvLmV4YW1wbGUuY29tMB4XDTI2MTEyMTIwNTEy
NloXDTI3MDIxOTIwNTEyNlowIDEeMBwGA1UEAwwVZmx5cG90YXRvLmV4YW1wbGUu
Y29tMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEcG3BAUlAnQ6JgSzopnptRE9G
3GG9NBfx/u/HlnRIrDqAmLlCPhdbg45XYU5jIXEbCiSfbwQSS1PlsIK04IUbM6OB
1TCB0jAdBgNVHQ4EFgQUxsMdWfD9E/Maa+JucR0EKgffai4wHwYDVR0jBBgwFoAU
xsMdWfD9E/Maa+JucR0EKgffai4wDwYDVR0TAQH/BAUwAwEB/zBdBggrBgEFBQcB
AQRRME8wIwYIKwYBBQUHMAGGF2h0dHA6Ly9vY3NwLmV4YW1wbGUubmV0MCgGCCsG
AQUFBzAChhxodHRwOi8vY2EuZXhhbXBsZS5uZXQvY2EuZGVyMCAGA1UdEQQZMBeC
FWZseXBvdGF0by5leGFtcGxlLmNvbTAKBggqhkjOPQQDAgNIADBFAiAllYrtTrfA
D1+ojqDYRTNgSIJZcVubBX0aDFqSg2BcMwIhANH2sHwLWnnC65mWAG4TItOpGDiJ
Bc+pUcnHsX8DrawX
-----END CERTIFICATE-----
"""
CERT_WITHOUT_OCSP = """-----BEGIN CERTIFICATE-----
MIIB0TCCAXegAwIBAgIULYy0C4hfvOor6XqBCq3FUCPHs2UwCgYIKoZIzj0EAwIw
IDEeMBwGA1UEAwwVZmx5cG90YXRvLmV4YW1wbGUuY29tMB4XDTI2MTEyMTIwNTEy
NloXDTI3MDIxOTIwNTEyNlowIDEeMBwGA1UEAwwVZmx5cG90YXRvLmV4YW1wbGUu
Y29tMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEN3FR7lRIxyppCvZ+VIRhiW8d
TRGXbpW4AxZjvKRo/iD42qMNphotn97lzrUIn09Wlod5IQTYW/63CEJ33d8HnqOB
jjCBizAdBgNVHQ4EFgQUc7JdtUyyeEuB09V2xGbX5Rd5b4UwHwYDVR0jBBgwFoAU
c7JdtUyyeEuB09V2xGbX5Rd5b4UwDwYDVR0TAQH/BAUwAwEB/zA4BggrBgEFBQcB
AQQsMCowKAYIKwYBBQUHMAKGHGh0dHA6Ly9jYS5leGFtcGxlLm5ldC9jYS5kZXIw
CgYIKoZIzj0EAwIDSAAwRQIhALTDu3ba0miH4UuEgnpqLZAEA+qGP5vM8y8KTEYT
DdVCAiB5K/NZyU5v0SDxEhEL5BsgxTi8S+3XxLY3c/JlJcwVNw==
-----END CERTIFICATE-----
"""
PLACEHOLDER_KEY = "-----BEGIN PRIVATE KEY-----\nnot-a-real-key\n-----END PRIVATE KEY-----\n"
PROVIDED = {"tls.mode": "provided", "tls.certificate_pem": CERT_WITH_OCSP, "tls.private_key_pem": PLACEHOLDER_KEY}
DATALENS = {
    "datalens.allow_list": ["203.0.113.0/24", "198.51.100.7/32"],
    "datalens.embed_origins": ["https://datalens.yandex.ru"],
    "host_ports.datalens": 15433,
}


def settings_of(stack: str, overrides: Mapping[str, Any] | None = None) -> Settings:
    return parse_settings(stack_config(stack, overrides), stack=stack)


def server_blocks(conf: str) -> list[str]:
    """The http server blocks, by brace matching."""
    blocks, start = [], 0
    while (index := conf.find("    server {", start)) != -1:
        depth, pos = 0, index
        while True:
            char = conf[pos]
            depth += char == "{"
            depth -= char == "}"
            pos += 1
            if char == "}" and depth == 0:
                break
        blocks.append(conf[index:pos])
        start = pos
    return blocks


def location(block: str, path: str) -> str:
    match = re.search(rf"location {re.escape(path)} \{{(.*?)\n        \}}", block, re.DOTALL)
    assert match, f"no location {path}"
    return match.group(1)


@pytest.fixture(scope="module")
def prod_conf() -> str:
    return render_nginx_conf(settings_of("prod", DATALENS))


@pytest.fixture(scope="module")
def dev_conf() -> str:
    return render_nginx_conf(settings_of("dev"))


# --- certificates ------------------------------------------------------------------------------------


def test_internal_ca_issues_an_ecdsa_p256_server_certificate_that_renews_before_the_alert(graph: ProgramGraph) -> None:
    keys = graph.of_type("tls:index/privateKey:PrivateKey")
    assert {(k.prop("algorithm"), k.prop("ecdsaCurve")) for k in keys} == {("ECDSA", "P256")}
    ca = graph.of_type("tls:index/selfSignedCert:SelfSignedCert")
    assert len(ca) == 1 and ca[0].prop("isCaCertificate") is True
    (server,) = graph.of_type("tls:index/locallySignedCert:LocallySignedCert")
    validity, renewal = server.prop("validityPeriodHours"), server.prop("earlyRenewalHours")
    assert validity <= 366 * 24, "Mozilla intermediate lifespan (and CA/B's 397 days)"
    assert 14 * 24 < renewal < validity, "a routine `pulumi up` renews before the 14-day expiry alert"
    assert set(server.prop("allowedUses")) == {"digital_signature", "server_auth"}
    (csr,) = graph.of_type("tls:index/certRequest:CertRequest")
    assert csr.prop("dnsNames") == [graph.config["domain"]]


def test_nginx_receives_config_certificate_and_secret_key_as_files(graph: ProgramGraph) -> None:
    nginx = graph.containers()["nginx"]
    assert is_secret(nginx.inputs["uploads"]), "the upload list carries the key as a secret"
    uploads = {u["file"]: u for u in nginx.prop("uploads")}
    key = uploads["/etc/fly-potato/secrets/server.key"]
    assert key["permissions"] == "0400" and "PRIVATE KEY" in key["content"]
    assert "/etc/fly-potato/tls/server-chain.pem" in uploads
    conf = uploads["/etc/fly-potato/nginx.conf"]["content"]
    assert not is_secret(conf) and "ssl_certificate /etc/fly-potato/tls/server-chain.pem;" in conf
    assert not nginx.prop("mounts") or all(m["type"] == "volume" for m in nginx.prop("mounts")), "no bind mounts"
    assert nginx.prop("command")[:3] == ["nginx", "-e", "stderr"]
    expect = "301" if graph.stack == "prod" else "200"
    assert f"grep -q ' {expect} '" in nginx.prop("healthcheck")["tests"][-1]


def test_provided_chain_is_served_as_given_with_ocsp_stapling_when_it_names_a_responder() -> None:
    graph = evaluate_program("prod", PROVIDED)
    assert graph.error is None, graph.error
    assert not [r for r in graph.resources if r.type.startswith("tls:")], "no internal CA"
    nginx = graph.containers()["nginx"]
    assert is_secret(nginx.inputs["uploads"])
    uploads = {u["file"]: u for u in nginx.prop("uploads")}
    assert uploads["/etc/fly-potato/tls/server-chain.pem"]["content"] == CERT_WITH_OCSP
    assert uploads["/etc/fly-potato/secrets/server.key"]["content"] == PLACEHOLDER_KEY
    assert "ssl_stapling on;" in uploads["/etc/fly-potato/nginx.conf"]["content"]


def test_ocsp_stapling_only_when_the_certificate_names_a_responder() -> None:
    assert names_ocsp_responder(CERT_WITH_OCSP) is True
    assert names_ocsp_responder(CERT_WITHOUT_OCSP) is False
    assert "ssl_stapling" not in render_nginx_conf(settings_of("prod"))  # internal CA: no responder
    with_ocsp = render_nginx_conf(settings_of("prod"), ocsp_stapling=True)
    assert "ssl_stapling on;" in with_ocsp and "ssl_stapling_verify on;" in with_ocsp


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"tls.validity_days": 397}, "fly-potato:tls.validity_days = 397 is out of range"),
        (
            {"tls.mode": "provided", "tls.certificate_pem": "hello", "tls.private_key_pem": PLACEHOLDER_KEY},
            'fly-potato:tls.certificate_pem = "hello" is not a PEM certificate chain',
        ),
        ({"edge.hsts_max_age": 86400}, "fly-potato:edge.hsts_max_age = 86400 is out of range"),
        ({"edge.csp_extra": {"img-src": ["https://a.example; script-src *"]}}, "fly-potato:edge.csp_extra"),
    ],
)
def test_bad_tls_and_edge_settings_are_refused_with_the_key_named(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SettingsError) as error:
        settings_of("prod", overrides)
    assert fragment in str(error.value)


def test_a_provided_key_that_is_not_pem_stops_the_program_without_echoing_it() -> None:
    graph = evaluate_program("prod", {**PROVIDED, "tls.private_key_pem": "oops-not-a-key"})
    assert graph.error and "fly-potato:tls.private_key_pem is not a PEM private key" in graph.error
    assert "oops-not-a-key" not in graph.error
    assert graph.resources == [], "refused before anything is declared"


# --- nginx ---------------------------------------------------------------------------------------------


def test_tls_is_mozilla_intermediate(prod_conf: str) -> None:
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in prod_conf
    assert f"ssl_ciphers {MOZILLA_INTERMEDIATE_CIPHERS};" in prod_conf
    assert "ssl_prefer_server_ciphers off;" in prod_conf
    assert "ssl_ecdh_curve X25519:prime256v1:secp384r1;" in prod_conf
    assert "ssl_session_tickets off;" in prod_conf and "ssl_session_timeout 1d;" in prod_conf


def test_port_80_only_redirects_in_prod(prod_conf: str) -> None:
    http, https = server_blocks(prod_conf)[:2]
    assert "listen 80 default_server;" in http
    directives = [line.strip() for line in http.splitlines()[1:-1] if line.strip() and not line.strip().startswith("#")]
    assert directives == [
        "listen 80 default_server;",
        "server_name flypotato.example.com;",
        "return 301 https://flypotato.example.com$request_uri;",
    ]
    assert "listen 443 ssl http2 default_server;" in https


def test_hsts_on_every_https_location_that_sets_headers(prod_conf: str) -> None:
    https = server_blocks(prod_conf)[1]
    hsts = 'add_header Strict-Transport-Security "max-age=63072000; includeSubDomains" always;'
    assert https.count("add_header") > 0
    # add_header is not inherited by a location that sets its own: each such location repeats HSTS.
    for body in re.findall(r"location [^{]+\{(.*?)\n        \}", https, re.DOTALL):
        if "add_header" in body:
            assert hsts in body
    assert hsts in https.split("location")[0], "server level, for locations without their own headers"


def test_security_headers_and_csp_with_datalens_frame_ancestors(prod_conf: str) -> None:
    https = server_blocks(prod_conf)[1]
    api = location(https, "/api/")
    assert 'add_header X-Content-Type-Options "nosniff" always;' in api
    assert 'add_header Referrer-Policy "strict-origin-when-cross-origin" always;' in api
    csp = re.search(r'Content-Security-Policy "([^"]+)"', api)
    assert csp and "frame-ancestors 'self' https://datalens.yandex.ru" in csp.group(1)
    assert "default-src 'self'" in csp.group(1)


def test_api_answers_401_and_pages_redirect_to_sign_in(prod_conf: str) -> None:
    https = server_blocks(prod_conf)[1]
    api, pages = location(https, "/api/"), location(https, "/")
    for body in (api, pages):
        assert "auth_request /oauth2/auth;" in body
        assert "proxy_pass $upstream_backend;" in body
        for header, variable in [
            ("X-Auth-Request-User", "$auth_user"),
            ("X-Auth-Request-Email", "$auth_email"),
            ("X-Auth-Request-Access-Token", "$auth_token"),
        ]:
            assert f"proxy_set_header {header} {variable};" in body
    assert "error_page 401 = @api_unauthorized;" in api
    assert "return 401" in location(https, "@api_unauthorized")
    assert "error_page 401 = /oauth2/sign_in;" in pages
    assert "internal;" in location(https, "= /oauth2/auth")
    assert "proxy_pass $upstream_oauth2_proxy;" in location(https, "/oauth2/")


def test_forwarded_headers_are_overwritten_in_every_proxied_location(prod_conf: str) -> None:
    https = server_blocks(prod_conf)[1]
    for path in ("/oauth2/", "= /oauth2/auth", "/api/", "^~ /sso/realms/fly-potato-prod/", "^~ /sso/resources/", "/"):
        body = location(https, path)
        assert "proxy_set_header X-Forwarded-For $remote_addr;" in body, path
        assert "proxy_set_header X-Forwarded-Proto https;" in body, path
        assert "proxy_set_header X-Forwarded-Host $host;" in body, path
        assert 'proxy_set_header Forwarded "";' in body, path
    assert "$proxy_add_x_forwarded_for" not in prod_conf


def test_only_keycloak_realms_and_resources_are_public(prod_conf: str) -> None:
    """An allow-list (R-AUTH-2): the stack's own realm and the resources; every other realm, master above all,
    falls to the closed /sso/ (tests/edge tries the hostile spellings on a real nginx)."""
    https = server_blocks(prod_conf)[1]
    assert "proxy_pass $upstream_keycloak;" in location(https, "^~ /sso/realms/fly-potato-prod/")
    assert "proxy_pass $upstream_keycloak;" in location(https, "^~ /sso/resources/")
    sso_locations = re.findall(r"location [^{]*/sso[^{]*\{", https)
    assert sorted(sso_locations) == [
        "location /sso/ {",
        "location = /sso {",
        "location ^~ /sso/realms/fly-potato-prod/ {",
        "location ^~ /sso/resources/ {",
    ]
    for closed in ("/sso/", "= /sso"):
        assert location(https, closed).strip() == "return 404;"
    assert prod_conf.count("proxy_pass $upstream_keycloak;") == 2
    assert ":9000" not in prod_conf, "Keycloak's management port is never proxied"


def test_rate_limits_body_size_and_token_free_access_log(prod_conf: str) -> None:
    https = server_blocks(prod_conf)[1]
    assert "limit_req zone=api burst=40 nodelay;" in location(https, "/api/")
    assert "limit_req zone=oauth2 burst=20 nodelay;" in location(https, "/oauth2/")
    assert "rate=20r/s;" in prod_conf and "rate=60r/m;" in prod_conf
    assert "client_max_body_size 50m;" in prod_conf
    log_format = prod_conf[prod_conf.index("log_format edge") : prod_conf.index("access_log")]
    for leaky in (
        "$request ",
        '$request"',
        "$request_uri",
        "$args",
        "$query_string",
        "$http_referer",
        "$http_cookie",
        "$http_authorization",
        "$auth_token",
    ):
        assert leaky not in log_format, leaky
    assert '"path":"$uri"' in log_format


def test_datalens_stream_proxy_allows_only_the_allow_list(prod_conf: str) -> None:
    stream = prod_conf[prod_conf.index("stream {") :]
    assert "listen 5433;" in stream
    assert stream.index("allow 203.0.113.0/24;") < stream.index("allow 198.51.100.7/32;") < stream.index("deny all;")
    assert "0.0.0.0/0" not in stream
    assert 'default "postgres:5433";' in stream
    assert "load_module /usr/lib/nginx/modules/ngx_stream_module.so;" in prod_conf


def test_no_stream_proxy_without_an_allow_list() -> None:
    conf = render_nginx_conf(settings_of("prod"))
    assert "stream {" not in conf and "load_module" not in conf


def test_dev_serves_the_app_on_plain_http_without_hsts(dev_conf: str) -> None:
    http, https = server_blocks(dev_conf)[:2]
    assert "auth_request /oauth2/auth;" in http and "return 301" not in http
    assert "proxy_set_header X-Forwarded-Proto http;" in http
    assert "add_header Strict-Transport-Security" not in dev_conf
    assert "listen 443 ssl http2 default_server;" in https, "HTTPS parity inside the container"


def test_upstreams_use_catalog_ports_and_docker_names(prod_conf: str) -> None:
    assert 'map $host $upstream_backend { default "http://backend:80"; }' in prod_conf
    assert 'map $host $upstream_oauth2_proxy { default "http://oauth2-proxy:4180"; }' in prod_conf
    assert 'map $host $upstream_keycloak { default "http://keycloak:8080"; }' in prod_conf
    assert "resolver 127.0.0.11" in prod_conf


# --- oauth2-proxy ---------------------------------------------------------------------------------------


def oauth2_proxy_options(stack: str) -> dict[str, Any]:
    settings = settings_of(stack)
    text = render_oauth2_proxy_config(
        settings,
        issuer_url=f"{settings.public_url}/sso/realms/{settings.realm}",
        keycloak_internal_url="http://keycloak:8080/sso",
        client_id="oauth2-proxy",
    )
    return tomllib.loads(text)


def test_oauth2_proxy_has_every_r_auth_1_flag_in_prod() -> None:
    options = oauth2_proxy_options("prod")
    assert options["provider"] == "keycloak-oidc"
    assert options["cookie_secure"] is True
    assert options["cookie_httponly"] is True
    assert options["cookie_samesite"] == "lax"
    assert options["pass_access_token"] is True
    assert options["reverse_proxy"] is True
    assert options["set_xauthrequest"] is True
    # Loopback only: the metrics gate answers on 44180 and wants the metrics token (R-SEC-5).
    assert options["metrics_address"] == "127.0.0.1:9999"
    assert options["request_logging"] is False, "request logs would carry authorization codes"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_sign_in_state_carries_no_unescaped_ampersand(stack: str) -> None:
    """oauth2-proxy 7.8 writes the page to return to into the OIDC ``state`` as ``nonce:/page?a=1&b=2``; handed
    back unescaped, the callback splits it at ``&``. With ``encode_state`` it is base64url, which has no ``&``."""
    assert oauth2_proxy_options(stack)["encode_state"] is True


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_oauth2_proxy_cookie_secret_is_base64url_of_32_bytes_and_never_a_random_bytes(stack: str) -> None:
    """oauth2-proxy decodes the secret as unpadded base64url: 43 letters and digits give 32 bytes (AES-256).
    No RandomBytes anywhere: pulumi-random stores a RandomBytes' value as its plaintext resource ID."""
    graph = evaluate_program(stack)
    assert graph.of_type("random:index/randomBytes:RandomBytes") == []
    cookie = graph.by_name("auth-oauth2-proxy-cookie")
    assert (cookie.prop("length"), cookie.prop("special")) == (43, False)
    secret = {u["file"]: u for u in graph.containers()["oauth2_proxy"].prop("uploads")}[COOKIE_SECRET_FILE]["content"]
    assert re.fullmatch(r"[A-Za-z0-9]{43}", secret)
    assert len(base64.urlsafe_b64decode(secret + "=")) == 32


def test_oauth2_proxy_config_holds_no_secret_and_reads_them_from_files() -> None:
    options = oauth2_proxy_options("prod")
    assert "client_secret" not in options and "cookie_secret" not in options
    assert options["client_secret_file"] == CLIENT_SECRET_FILE
    assert COOKIE_SECRET_FILE in START and "OAUTH2_PROXY_COOKIE_SECRET" in START


def test_oauth2_proxy_issuer_is_public_and_back_channel_is_in_the_app_zone() -> None:
    options = oauth2_proxy_options("prod")
    issuer = "https://flypotato.example.com/sso/realms/fly-potato-prod"
    assert options["oidc_issuer_url"] == issuer
    assert options["skip_oidc_discovery"] is True
    assert options["login_url"] == f"{issuer}/protocol/openid-connect/auth"
    internal = "http://keycloak:8080/sso/realms/fly-potato-prod/protocol/openid-connect"
    assert options["redeem_url"] == f"{internal}/token"
    assert options["oidc_jwks_url"] == f"{internal}/certs"
    assert options["redirect_url"] == "https://flypotato.example.com/oauth2/callback"


def test_oauth2_proxy_gets_a_plain_config_and_secret_files(graph: ProgramGraph) -> None:
    proxy = graph.containers()["oauth2_proxy"]
    assert is_secret(proxy.inputs["uploads"])
    uploads = {u["file"]: u for u in proxy.prop("uploads")}
    options = tomllib.loads(uploads[CONFIG_FILE]["content"])
    assert options["skip_oidc_discovery"] is True and options["cookie_samesite"] == "lax"
    assert uploads[CLIENT_SECRET_FILE]["permissions"] == "0400"
    assert uploads[COOKIE_SECRET_FILE]["permissions"] == "0400"
    assert len(base64.urlsafe_b64decode(uploads[COOKIE_SECRET_FILE]["content"] + "=")) == 32
    assert not any("COOKIE_SECRET=" in e and "$(cat" not in e for e in proxy.prop("envs") or [])


def test_dev_cookie_is_not_secure_because_dev_is_plain_http() -> None:
    options = oauth2_proxy_options("dev")
    assert options["cookie_secure"] is False
    assert options["redirect_url"] == "http://localhost/oauth2/callback"


# --- DNS preflight --------------------------------------------------------------------------------------


def deploy_host(
    *, resolve: Callable[[str], set[str]] | None = None, nofile_hard_limit: int | None = None, cpus: int = 64
) -> preflight.HostProbes:
    """A deploying machine for the preflight: DNS answers nothing unless given, Docker grants ``nofile_hard_limit``
    open files (None: unlimited) and ``cpus`` CPUs."""
    return preflight.HostProbes(
        resolve=resolve or (lambda name: set()), nofile_hard_limit=lambda: nofile_hard_limit, cpus=lambda: cpus
    )


def test_the_program_asks_the_deploying_machine_itself() -> None:
    """Run by the Pulumi CLI (as ``__main__``), the program's preflight asks this machine's resolver and Docker
    daemon; only the offline evaluation passes other probes."""
    main = runpy.run_path(str(ROOT / "__main__.py"), run_name="fly_potato_program")["main"]
    assert main.__defaults__ == (preflight.SYSTEM_PROBES,)
    probes = preflight.SYSTEM_PROBES
    assert (probes.resolve, probes.nofile_hard_limit, probes.cpus) == (
        preflight.system_resolver,
        preflight.docker_nofile_hard_limit,
        preflight.host_cpus,
    )


def test_preflight_passes_when_the_domain_resolves_to_the_public_address() -> None:
    settings = settings_of("prod", {"public_address": "203.0.113.10"})
    preflight.check_dns(settings, resolve=lambda name: {"203.0.113.10", "2001:db8::1"})


def test_preflight_stops_when_the_domain_does_not_resolve() -> None:
    with pytest.raises(preflight.PreflightError) as error:
        preflight.check_dns(settings_of("prod"), resolve=lambda name: set())
    message = str(error.value)
    assert "fly-potato:domain = flypotato.example.com does not resolve" in message
    assert "fly-potato:features.dns_preflight = false" in message


def test_preflight_stops_when_the_domain_points_elsewhere() -> None:
    settings = settings_of("prod", {"public_address": "203.0.113.10"})
    with pytest.raises(preflight.PreflightError) as error:
        preflight.check_dns(settings, resolve=lambda name: {"198.51.100.1"})
    assert "resolves to 198.51.100.1, not to fly-potato:public_address = 203.0.113.10" in str(error.value)


def test_preflight_runs_before_any_resource_and_can_be_switched_off() -> None:
    asked: list[str] = []

    def nowhere(name: str) -> set[str]:
        asked.append(name)
        return set()

    host = deploy_host(resolve=nowhere, cpus=16)  # a host the prod sizing fits
    stopped = evaluate_program("prod", host=host)
    assert stopped.error and "does not resolve" in stopped.error
    assert stopped.resources == [], "nothing declared before the preflight"
    assert asked == ["flypotato.example.com"]

    off = evaluate_program("prod", {"features.dns_preflight": False}, host=host)
    assert off.error is None and off.resources
    dev = evaluate_program("dev", host=host)
    assert dev.error is None, "dev does not check DNS unless asked"
    assert asked == ["flypotato.example.com"]


# --- open-files limit -------------------------------------------------------------------------------------


def test_every_service_gets_the_configured_open_files_limit() -> None:
    graph = evaluate_program("dev", {"host.max_open_files": 4096})
    for service, container in graph.containers().items():
        nofile = next(u for u in container.prop("ulimits") if u["name"] == "nofile")
        assert (nofile["soft"], nofile["hard"]) == (4096, 4096), service


def test_preflight_refuses_more_open_files_than_the_docker_daemon_may_grant() -> None:
    with pytest.raises(preflight.PreflightError) as error:
        preflight.check_open_files(settings_of("dev"), 8192)
    message = str(error.value)
    assert "fly-potato:host.max_open_files = 16384 exceeds the Docker daemon's hard open-files limit 8192" in message
    assert "set it to at most 8192" in message
    preflight.check_open_files(settings_of("dev"), 16384)
    preflight.check_open_files(settings_of("dev"), None)  # unlimited

    host = deploy_host(nofile_hard_limit=2048)
    stopped = evaluate_program("dev", host=host)
    assert stopped.error and "host.max_open_files" in stopped.error and stopped.resources == []
    assert evaluate_program("dev", {"host.max_open_files": 2048}, host=host).error is None


def test_preflight_refuses_cpu_limits_above_the_docker_hosts_cpus() -> None:
    """Docker refuses a container whose ``cpus`` exceeds the host's: stop before the first resource instead."""
    with pytest.raises(preflight.PreflightError) as error:
        preflight.check_cpus(settings_of("prod"), 2)
    message = str(error.value)
    assert "fly-potato:resources.postgres.cpus = 4 exceeds the 2 CPUs of the Docker host" in message
    assert "set it to at most 2" in message and "backend" not in message
    preflight.check_cpus(settings_of("prod"), 4)
    preflight.check_cpus(settings_of("prod", {"resources.postgres.cpus": 2}), 2)

    host = deploy_host(cpus=1)
    stopped = evaluate_program("dev", {"resources.backend.cpus": 1.5}, host=host)
    assert stopped.error and "resources.backend.cpus = 1.5" in stopped.error and stopped.resources == []
    assert evaluate_program("dev", host=host).error is None


def test_the_docker_daemons_limit_is_read_from_its_proc_limits(tmp_path: Path) -> None:
    pidfile = tmp_path / "docker.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    assert preflight.docker_nofile_hard_limit(pidfile) == resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert preflight.docker_nofile_hard_limit(tmp_path / "absent.pid") == resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def test_the_open_files_limit_is_bounded() -> None:
    with pytest.raises(SettingsError) as error:
        settings_of("dev", {"host.max_open_files": 100})
    assert "fly-potato:host.max_open_files" in str(error.value)
