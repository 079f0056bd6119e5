"""Every policy of the pack, passing and failing, on the real program (checkov style: exact sets).

Failing cases mutate the stack config where the settings accept the bad value. Where the settings
already refuse it (a non-digest prod image, 0.0.0.0/0 for DataLens, ...) or the value is not config at
all (nginx directives, container hardening, environment), the recorded resource graph is mutated
instead; each such case says why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from policy.pack import POLICIES
from policy_plan.program import ProgramGraph
from tests.policy.support import (
    NGINX_CONF,
    check,
    container,
    edit_inputs,
    edit_upload,
    evaluate,
    found,
    replace_in,
)

M, A = "mandatory", "advisory"
DATALENS = {"datalens": {"allow_list": ["203.0.113.0/24"]}, "host_ports": {"postgres": 15433}}


@dataclass
class Case:
    policy: str
    stack: str
    expected: set[tuple[str, str]]  # (resource, level)
    overrides: dict[str, Any] = field(default_factory=dict)
    mutate: Callable[[ProgramGraph], None] | None = None
    why: str = ""


def _add_env(service: str, entry: str) -> Callable[[ProgramGraph], None]:
    def mutate(graph: ProgramGraph) -> None:
        edit_inputs(container(graph, service), "envs", lambda envs: [*(envs or []), entry])

    return mutate


def _set_input(service: str, key: str, value: Any) -> Callable[[ProgramGraph], None]:
    def mutate(graph: ProgramGraph) -> None:
        container(graph, service).inputs[key] = value

    return mutate


def _nginx(old: str, new: str) -> Callable[[ProgramGraph], None]:
    def mutate(graph: ProgramGraph) -> None:
        edit_upload(graph, "nginx", NGINX_CONF, replace_in(old, new))

    return mutate


def _join_network(service: str, zone: str) -> Callable[[ProgramGraph], None]:
    def mutate(graph: ProgramGraph) -> None:
        name = f"fly-potato-{graph.stack}-{zone}"
        edit_inputs(
            container(graph, service), "networksAdvanced", lambda nets: [*nets, {"name": name, "aliases": [service]}]
        )

    return mutate


def _rebind(services: tuple[str, ...], address: str) -> Callable[[ProgramGraph], None]:
    def mutate(graph: ProgramGraph) -> None:
        for service in services:
            edit_inputs(container(graph, service), "ports", lambda ports: [{**p, "ip": address} for p in ports])

    return mutate


def _network_input(zone: str, key: str, value: Any) -> Callable[[ProgramGraph], None]:
    def mutate(graph: ProgramGraph) -> None:
        graph.by_name(f"zones-{zone}").inputs[key] = value

    return mutate


def _oauth2_option(old: str, new: str) -> Callable[[ProgramGraph], None]:
    def mutate(graph: ProgramGraph) -> None:
        edit_upload(graph, "oauth2_proxy", "/etc/fly-potato/oauth2-proxy.cfg", replace_in(old, new))

    return mutate


def _tls_input(name: str, key: str, value: Any) -> Callable[[ProgramGraph], None]:
    def mutate(graph: ProgramGraph) -> None:
        graph.by_name(name).inputs[key] = value

    return mutate


def _env_from_secret(service: str, secret: str) -> Callable[[ProgramGraph], None]:
    def mutate(graph: ProgramGraph) -> None:
        target = container(graph, service)
        edit_inputs(target, "envs", lambda envs: [*(envs or []), "DB_URL=postgresql://app:Mock1@postgres/x"])
        target.property_dependencies.setdefault("envs", []).append(graph.by_name(secret).urn)

    return mutate


def _prometheus_job(name: str, change: Callable[[dict[str, Any]], Any]) -> Callable[[ProgramGraph], None]:
    def rewrite(text: str) -> str:
        config = yaml.safe_load(text)
        [job] = [job for job in config["scrape_configs"] if job["job_name"] == name]
        change(job)
        return yaml.safe_dump(config, sort_keys=False)

    def mutate(graph: ProgramGraph) -> None:
        edit_upload(graph, "prometheus", "/etc/fly-potato/prometheus.yml", rewrite)

    return mutate


def _replace_env(service: str, old: str, new: str) -> Callable[[ProgramGraph], None]:
    def mutate(graph: ProgramGraph) -> None:
        def change(envs: list[str]) -> list[str]:
            assert old in envs, f"{old} not in {service}'s environment"
            return [new if entry == old else entry for entry in envs]

        edit_inputs(container(graph, service), "envs", change)

    return mutate


CASES = [
    # R-NET-1
    Case("public-bindings-nginx-only", "prod", set()),
    Case("public-bindings-nginx-only", "prod", {("prometheus", M)}, overrides={"publish": {"prometheus": "public"}}),
    Case("public-bindings-nginx-only", "prod", {("nginx", M)}, overrides={"publish": {"nginx_https": "none"}}),
    Case("public-bindings-nginx-only", "prod", set(), overrides=DATALENS),
    # R-NET-2: the example of the issue
    Case("other-bindings-loopback", "prod", set()),
    Case(
        "other-bindings-loopback",
        "prod",
        {("postgres", M)},
        overrides={"publish": {"postgres": "public"}, "public_bind_address": "0.0.0.0"},
    ),
    Case(
        "other-bindings-loopback",
        "prod",
        {("postgres", M), ("keycloak", M)},
        mutate=_rebind(("postgres", "keycloak"), "192.0.2.10"),
        why="the settings refuse a routable operator_bind_address",
    ),
    # R-NET-3
    Case("dev-bindings-loopback", "dev", set()),
    Case(
        "dev-bindings-loopback",
        "dev",
        {
            (s, M)
            for s in (
                "postgres",
                "backend",
                "nginx",
                "keycloak",
                "oauth2_proxy",
                "prometheus",
                "alertmanager",
                "node_exporter",
                "postgres_exporter",
                "sql_exporter",
            )
        },
        mutate=_rebind(
            (
                "postgres",
                "backend",
                "nginx",
                "keycloak",
                "oauth2_proxy",
                "prometheus",
                "alertmanager",
                "node_exporter",
                "postgres_exporter",
                "sql_exporter",
            ),
            "0.0.0.0",
        ),
        why="the settings refuse a dev public_bind_address or operator_bind_address off loopback (R-NET-3 is "
        "mandatory in every profile)",
    ),
    # R-NET-4
    Case("zone-membership", "prod", set()),
    Case("zone-membership", "dev", set()),
    Case("zone-membership", "prod", set(), overrides=DATALENS),
    Case(
        "zone-membership",
        "prod",
        {("postgres", M)},
        mutate=_join_network("postgres", "app"),
        why="zones are decided in components/catalog.py, not by stack config",
    ),
    Case(
        "zone-membership",
        "prod",
        {("prometheus", M)},
        mutate=_join_network("prometheus", "edge"),
        why="zones are decided in components/catalog.py, not by stack config",
    ),
    # R-NET-5
    Case("egress-allow-list", "prod", set()),
    Case(
        "egress-allow-list",
        "prod",
        {("zones-data", M)},
        mutate=_network_input("data", "internal", False),
        why="the settings refuse zones.data.internal = false in prod",
    ),
    Case(
        "egress-allow-list",
        "prod",
        {("postgres", M)},
        mutate=_join_network("postgres", "egress"),
        why="the settings add a service to egress only from an egress rule",
    ),
    # R-NET-6
    Case("datalens-exposure", "prod", set()),
    Case("datalens-exposure", "prod", set(), overrides=DATALENS),
    Case(
        "datalens-exposure",
        "prod",
        {("nginx", M)},
        overrides=DATALENS,
        mutate=_nginx("allow 203.0.113.0/24;", "allow 0.0.0.0/0;"),
        why="the settings refuse 0.0.0.0/0 in datalens.allow_list",
    ),
    # R-TLS-1
    Case("tls-protocols-ciphers", "prod", set()),
    Case(
        "tls-protocols-ciphers",
        "prod",
        {("nginx", M)},
        mutate=_nginx("ssl_protocols TLSv1.2 TLSv1.3;", "ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;"),
        why="protocols are not configurable: the template fixes them",
    ),
    Case(
        "tls-protocols-ciphers",
        "prod",
        {("nginx", M)},
        mutate=_nginx(
            "ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:", "ssl_ciphers AES128-SHA:ECDHE-ECDSA-AES128-GCM-SHA256:"
        ),
        why="ciphers are not configurable: the template fixes them",
    ),
    # R-TLS-2
    Case("tls-hsts", "prod", set()),
    Case(
        "tls-hsts",
        "prod",
        {("nginx", M)},
        mutate=_nginx(
            '"max-age=63072000; includeSubDomains" always;\n        add_header X-Content-Type-Options',
            '"max-age=3600" always;\n        add_header X-Content-Type-Options',
        ),
        why="the header is fixed by the template",
    ),
    # R-TLS-4
    Case("tls-keys-renewal", "prod", set()),
    Case(
        "tls-keys-renewal",
        "prod",
        {("edge-tls-server", M)},
        mutate=_tls_input("edge-tls-server", "earlyRenewalHours", 24.0),
        why="the settings refuse tls.renew_before_days below 15",
    ),
    Case(
        "tls-keys-renewal",
        "prod",
        {("edge-tls-server-key", M)},
        mutate=_tls_input("edge-tls-server-key", "ecdsaCurve", "P224"),
        why="the key algorithm is not configurable",
    ),
    # R-TLS-5
    Case("http-redirect-only", "prod", set()),
    Case(
        "http-redirect-only",
        "prod",
        {("nginx", M)},
        mutate=_nginx(
            "return 301 https://flypotato.example.com$request_uri;", "location / { proxy_pass http://backend:80; }"
        ),
        why="the port-80 server is fixed by the template",
    ),
    # R-AUTH-1
    Case("oauth2-proxy-flags", "prod", set()),
    Case(
        "oauth2-proxy-flags",
        "prod",
        {("oauth2_proxy", M)},
        mutate=_oauth2_option('cookie_samesite = "lax"', 'cookie_samesite = "none"'),
        why="the flags are fixed by components/oauth2_proxy.py",
    ),
    Case(
        "oauth2-proxy-flags",
        "prod",
        {("oauth2_proxy", M)},
        mutate=lambda graph: edit_upload(
            graph, "oauth2_proxy", "/etc/fly-potato/secrets/oauth2_cookie_secret", lambda _: "short"
        ),
        why="the cookie secret is generated",
    ),
    # R-AUTH-2
    Case("keycloak-proxy-exposure", "prod", set()),
    Case("keycloak-proxy-exposure", "dev", set()),
    Case(
        "keycloak-proxy-exposure",
        "prod",
        {("nginx", M)},
        mutate=_nginx(
            "location /sso/ {\n            return 404;", "location /sso/ {\n            proxy_pass $upstream_keycloak;"
        ),
        why="the routes are fixed by the template",
    ),
    Case(
        "keycloak-proxy-exposure",
        "prod",
        {("keycloak", M)},
        mutate=_add_env("keycloak", "KC_PROXY=edge"),
        why="Keycloak's environment is fixed by components/auth_services.py",
    ),
    # R-SEC-1
    Case("no-plaintext-secret-env", "prod", set()),
    Case("no-plaintext-secret-env", "dev", set()),
    Case(
        "no-plaintext-secret-env",
        "prod",
        {("keycloak", M)},
        mutate=_add_env("keycloak", "KC_DB_PASSWORD=hunter22"),
        why="environments are code, not config",
    ),
    Case(
        "no-plaintext-secret-env",
        "prod",
        {("backend", M)},
        mutate=_env_from_secret("backend", "database-app-password"),
        why="environments are code, not config",
    ),
    # R-SEC-2
    Case("container-hardening", "prod", set()),
    Case("container-hardening", "dev", set()),
    Case(
        "container-hardening",
        "dev",
        {("keycloak", A)},
        mutate=_set_input("keycloak", "readOnly", False),
        why="HardenedContainer fixes the hardening; dev reports it as advisory",
    ),
    Case(
        "container-hardening",
        "prod",
        {("backend", M)},
        mutate=_set_input("backend", "privileged", True),
        why="HardenedContainer fixes the hardening",
    ),
    Case(
        "container-hardening",
        "prod",
        {("prometheus", M)},
        mutate=_set_input("prometheus", "mounts", [{"type": "bind", "source": "/srv/src", "target": "/src"}]),
        why="HardenedContainer mounts volumes only",
    ),
    # R-SEC-3
    Case("image-digest-pinned", "prod", set()),
    Case("image-digest-pinned", "dev", set()),
    Case(
        "image-digest-pinned",
        "prod",
        {("nginx", M)},
        mutate=_set_input("nginx", "image", "nginx:1.27"),
        why="the settings refuse prod images without a digest",
    ),
    # R-SEC-4 (advisory everywhere)
    Case("secret-rotation-age", "prod", {("auth-keycloak-admin", A), ("data-postgres-superuser", A)}),
    Case(
        "secret-rotation-age",
        "prod",
        {("(stack)", A), ("auth-keycloak-admin", A), ("data-postgres-superuser", A)},
        overrides={"secrets": {"rotation_epoch": 1, "rotated_on": "2026-01-05"}},
    ),
    # R-SEC-5
    Case("metrics-bearer-token-file", "prod", set()),
    Case("metrics-bearer-token-file", "dev", set()),
    Case(
        "metrics-bearer-token-file",
        "prod",
        {("prometheus", M)},
        mutate=_prometheus_job("keycloak", lambda job: job.pop("authorization")),
        why="scrape jobs are rendered by the program; every one gets the token file",
    ),
    Case(
        "metrics-bearer-token-file",
        "prod",
        {("prometheus", M)},
        mutate=_prometheus_job("oauth2_proxy", lambda job: job.update(authorization={"credentials": "x" * 40})),
        why="the program never writes a credential inline",
    ),
    Case(
        "metrics-bearer-token-file",
        "dev",
        {("prometheus", A)},
        mutate=_prometheus_job(
            "backend", lambda job: job.update(authorization={"credentials_file": "/etc/fly-potato/prometheus.yml"})
        ),
        why="the program points every job at the secret token file",
    ),
    Case(
        "metrics-bearer-token-file",
        "dev",
        {("keycloak", A)},
        mutate=_replace_env("keycloak", "KC_HTTP_MANAGEMENT_HOST=127.0.0.1", "KC_HTTP_MANAGEMENT_HOST=0.0.0.0"),
        why="the management host is not stack config",
    ),
    Case(
        "metrics-bearer-token-file",
        "prod",
        {("oauth2_proxy", M)},
        mutate=_oauth2_option('metrics_address = "127.0.0.1:9999"', 'metrics_address = "0.0.0.0:9999"'),
        why="the metrics address is not stack config",
    ),
]


def _case_id(case: Case) -> str:
    change = ",".join(sorted(case.overrides)) or ""
    return f"{case.policy}-{case.stack}{'-' + change if change else ''}{'-mutated' if case.mutate else ''}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_policy_case(case: Case) -> None:
    graph = evaluate(case.stack, case.overrides)
    if case.mutate:
        case.mutate(graph)
    result = check(graph)
    assert found(result, case.policy) == {(case.policy, resource, level) for resource, level in case.expected}


def test_every_policy_has_a_passing_and_a_failing_case() -> None:
    passing = {c.policy for c in CASES if not c.expected}
    failing = {c.policy for c in CASES if c.expected}
    names = {p.name for p in POLICIES}
    assert passing | {"secret-rotation-age"} == names  # R-SEC-4's passing case is below
    assert failing == names


def test_rotation_within_90_days_of_every_rotating_secret_passes() -> None:
    graph = evaluate("prod")
    for name in ("auth-keycloak-admin", "data-postgres-superuser"):
        graph.by_name(name).inputs["keepers"] = {"rotation_epoch": "1"}
    assert found(check(graph), "secret-rotation-age") == set()


def test_r_net_2_names_postgres_and_its_port() -> None:
    graph = evaluate("prod", {"publish": {"postgres": "public"}, "public_bind_address": "0.0.0.0"})
    messages = [v.message for v in check(graph).violations if v.requirement == "R-NET-2"]
    assert len(messages) == 1 and "postgres" in messages[0] and "5433" in messages[0]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_committed_stacks_have_no_mandatory_violation(stack: str) -> None:
    result = check(evaluate(stack))
    assert result.mandatory == []
    # Only R-SEC-4's bootstrap secrets, applied once (at initdb / Keycloak's first start) and never rotated.
    expected = {
        ("secret-rotation-age", "auth-keycloak-admin", A),
        ("secret-rotation-age", "data-postgres-superuser", A),
    }
    assert {(v.policy, v.resource, v.level) for v in result.violations} == expected
