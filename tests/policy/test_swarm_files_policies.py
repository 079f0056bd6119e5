"""The rules that read files, on Swarm services: nginx.conf, prometheus.yml and oauth2-proxy.cfg as Swarm configs.

On a swarm a service's files are ``docker.ServiceConfig`` resources (``data``: base64 of the content, ``name``:
``<prefix>-<slug>-<hash>``) that ``taskSpec.containerSpec.configs`` references by name and id, and ``docker.Secret``
resources the same way. The swarm stack here is built from the real prod program (with DataLens on): each of nginx,
keycloak, prometheus and oauth2-proxy becomes a ``docker.Service`` whose configs and secrets hold the very files its
container receives on a host, shaped as the engine passes them at preview (ids unknown, names known). Every case
is also applied to the host graph: the service must fail with the container's messages. Exact sets, checkov style.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from pulumi.output import Unknown
from pulumi_policy import StackValidationArgs

from policy import context
from policy.props import UNKNOWN, ServiceView
from policy.rules._base import StackView
from policy_plan import crossguard
from policy_plan.program import SECRET_SIG, PlannedResource, ProgramGraph
from tests.policy.support import NGINX_CONF, TODAY, container, edit_inputs, edit_upload, evaluate, replace_in
from wire import SERVICE_LABEL, STACK_LABEL

M = "mandatory"
STACK = "prod"
DATALENS = {"datalens": {"allow_list": ["203.0.113.0/24"]}, "host_ports": {"postgres": 15433}}
SERVICE = "docker:index/service:Service"
SERVICE_CONFIG = "docker:index/serviceConfig:ServiceConfig"
SWARM_SECRET = "docker:index/secret:Secret"
RANDOM = "random:index/randomPassword:RandomPassword"
UNKNOWN_WIRE = crossguard.UNKNOWN_WIRE
SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270"  # Pulumi's marker of a secret value
PROMETHEUS_YML = "/etc/fly-potato/prometheus.yml"
OAUTH2_CFG = "/etc/fly-potato/oauth2-proxy.cfg"
COOKIE_SECRET = "/etc/fly-potato/secrets/oauth2_cookie_secret"
METRICS_TOKEN = "/etc/fly-potato/secrets/metrics_token"
SERVICES = ("nginx", "keycloak", "prometheus", "oauth2_proxy")

NET6, TLS1, TLS2, TLS5, AUTH1, AUTH2, SEC5 = (
    "datalens-exposure",
    "tls-protocols-ciphers",
    "tls-hsts",
    "http-redirect-only",
    "oauth2-proxy-flags",
    "keycloak-proxy-exposure",
    "metrics-bearer-token-file",
)
FILE_RULES = (NET6, TLS1, TLS2, TLS5, AUTH1, AUTH2, SEC5)


def _urn(type_: str, name: str) -> str:
    return f"urn:pulumi:{STACK}::fly-potato::{type_}::{name}"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _object_name(service: str, path: str, content: str) -> str:
    """As components.swarm.files names them: ``<prefix>-<slug>-<sha256 of the content, 12 hex>``."""
    slug = re.sub(r"[^a-z0-9]+", "-", path.removeprefix("/etc/fly-potato/").lower()).strip("-")
    return f"fly-potato-{STACK}-{service.replace('_', '-')}-{slug}-{hashlib.sha256(content.encode()).hexdigest()[:12]}"


def _swarm_service(host: ProgramGraph, service: str) -> list[PlannedResource]:
    """``service`` as a Swarm service with its host container's files as Swarm configs and secrets (uploads of 0400)."""
    source = host.containers()[service]
    objects: list[PlannedResource] = []
    configs: list[dict[str, Any]] = []
    secrets: list[dict[str, Any]] = []
    for upload in source.prop("uploads"):
        path, content = upload["file"], upload["content"]
        name = _object_name(service, path, content)
        resource_name = f"{service}-{path.rsplit('/', 1)[-1]}"
        ref = {"fileName": path, "fileUid": "10001", "fileGid": "10001"}
        if upload.get("permissions") == "0400":
            data = {SECRET_SIG: SECRET_VALUE, "value": _b64(content)}
            objects.append(
                PlannedResource(
                    _urn(SWARM_SECRET, resource_name),
                    SWARM_SECRET,
                    resource_name,
                    {"name": name, "data": data},
                    True,
                    "",
                    [],
                    {},
                )
            )
            secrets.append({**ref, "secretId": UNKNOWN_WIRE, "secretName": name, "fileMode": 0o400})
        else:
            config = {"name": name, "data": _b64(content)}
            objects.append(
                PlannedResource(
                    _urn(SERVICE_CONFIG, resource_name), SERVICE_CONFIG, resource_name, config, True, "", [], {}
                )
            )
            configs.append({**ref, "configId": UNKNOWN_WIRE, "configName": name, "fileMode": 0o440})
    entrypoint, command = source.prop("entrypoints"), source.prop("command")
    # HardenedService's `command` is the task's `commands` (the entrypoint); a wrapped process goes in `args`.
    spec: dict[str, Any] = {"commands": entrypoint, "args": command} if entrypoint else {"commands": command}
    spec |= {
        "image": source.prop("image"),
        "env": dict(entry.split("=", 1) for entry in source.prop("envs") or []),
        "configs": configs,
        "secrets": secrets,
    }
    inputs: dict[str, Any] = {
        "name": f"fly-potato-{STACK}-{service.replace('_', '-')}",
        "labels": [{"label": SERVICE_LABEL, "value": service}, {"label": STACK_LABEL, "value": STACK}],
        "taskSpec": {"containerSpec": spec},
    }
    if service == "nginx":  # the host's bindings, published on the edge nodes (keycloak's operator port is not)
        ports = [
            {"targetPort": p["internal"], "publishedPort": p["external"], "protocol": "tcp", "publishMode": "host"}
            for p in source.prop("ports")
        ]
        inputs["endpointSpec"] = {"mode": "dnsrr", "ports": ports}
    urns = [o.urn for o in objects]
    task = PlannedResource(_urn(SERVICE, service), SERVICE, service, inputs, True, "", list(urns), {"taskSpec": urns})
    return [*objects, task]


def _cookie_from_a_generated_password(graph: ProgramGraph) -> None:
    """The cookie secret's Swarm secret takes its data from a RandomPassword of 43 letters and digits."""
    password = PlannedResource(
        _urn(RANDOM, "oauth2-proxy-cookie"),
        RANDOM,
        "oauth2-proxy-cookie",
        {"length": 43, "special": False},
        True,
        "",
        [],
        {},
    )
    graph.resources.append(password)
    cookie = graph.by_name("oauth2_proxy-oauth2_cookie_secret")
    cookie.dependencies.append(password.urn)
    cookie.property_dependencies.update({"name": [password.urn], "data": [password.urn]})


def _host() -> ProgramGraph:
    return evaluate(STACK, DATALENS)


def _swarm() -> ProgramGraph:
    host = _host()
    resources = [resource for service in SERVICES for resource in _swarm_service(host, service)]
    graph = ProgramGraph(STACK, host.config, resources, {})
    _cookie_from_a_generated_password(graph)
    return graph


def _violations(graph: ProgramGraph, policies: tuple[str, ...]) -> list[crossguard.Violation]:
    result = crossguard.run(graph, context.make(graph.stack, graph.config, today=TODAY))
    return [v for v in result.violations if v.policy in policies]


def _found(graph: ProgramGraph, *policies: str) -> set[tuple[str, str, str]]:
    return {(v.policy, v.resource, v.level) for v in _violations(graph, policies)}


def _messages(graph: ProgramGraph, *policies: str) -> list[tuple[str, str, str]]:
    return sorted((v.policy, v.resource, v.message) for v in _violations(graph, policies))


def _refs(graph: ProgramGraph, service: str) -> list[dict[str, Any]]:
    refs: list[dict[str, Any]] = graph.by_name(service).inputs["taskSpec"]["containerSpec"]["configs"]
    return refs


def _edit_config(graph: ProgramGraph, service: str, path: str, change: Callable[[str], Any]) -> None:
    """New content for a Swarm config: a new object name (the content's hash) the service references; a change to
    ``Unknown()`` leaves its content, and so its name and id, unknown (rendered in apply(), at preview)."""
    [ref] = [ref for ref in _refs(graph, service) if ref["fileName"] == path]
    [config] = [c for c in graph.of_type(SERVICE_CONFIG) if c.inputs["name"] == ref["configName"]]
    text = change(base64.b64decode(config.inputs["data"]).decode())
    if isinstance(text, Unknown):
        config.inputs.update(name=UNKNOWN_WIRE, data=UNKNOWN_WIRE)
        ref["configName"] = UNKNOWN_WIRE
    else:
        ref["configName"] = config.inputs["name"] = _object_name(service, path, text)
        config.inputs["data"] = _b64(text)


@dataclass(frozen=True)
class File:
    """A change to a file the service receives: an upload on a host, a Swarm config on a swarm."""

    service: str
    path: str
    change: Callable[[str], Any]

    def on_host(self, graph: ProgramGraph) -> None:
        edit_upload(graph, self.service, self.path, self.change)

    def on_swarm(self, graph: ProgramGraph) -> None:
        _edit_config(graph, self.service, self.path, self.change)


@dataclass(frozen=True)
class Env:
    """A variable of the service's environment: ``envs`` of a container, ``containerSpec.env`` of a service."""

    service: str
    name: str
    value: str

    def on_host(self, graph: ProgramGraph) -> None:
        def change(envs: list[str]) -> list[str]:
            return [e for e in envs if not e.startswith(f"{self.name}=")] + [f"{self.name}={self.value}"]

        edit_inputs(container(graph, self.service), "envs", change)

    def on_swarm(self, graph: ProgramGraph) -> None:
        graph.by_name(self.service).inputs["taskSpec"]["containerSpec"]["env"][self.name] = self.value


def _nginx(old: str, new: str) -> File:
    return File("nginx", NGINX_CONF, replace_in(old, new))


def _prometheus_job(name: str, change: Callable[[dict[str, Any]], Any]) -> File:
    def rewrite(text: str) -> str:
        config = yaml.safe_load(text)
        [job] = [job for job in config["scrape_configs"] if job["job_name"] == name]
        change(job)
        return yaml.safe_dump(config, sort_keys=False)

    return File("prometheus", PROMETHEUS_YML, rewrite)


def _oauth2_option(old: str, new: str) -> File:
    return File("oauth2_proxy", OAUTH2_CFG, replace_in(old, new))


# The changes of tests/policy/test_policies.py's failing cases of these rules, on a swarm.
CASES: list[tuple[str, str, File | Env | None, set[str]]] = [
    ("compliant nginx.conf", NET6, None, set()),
    ("a DataLens stream open to 0.0.0.0/0", NET6, _nginx("allow 203.0.113.0/24;", "allow 0.0.0.0/0;"), {"nginx"}),
    ("compliant nginx.conf", TLS1, None, set()),
    (
        "TLSv1 in ssl_protocols",
        TLS1,
        _nginx("ssl_protocols TLSv1.2 TLSv1.3;", "ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;"),
        {"nginx"},
    ),
    (
        "a cipher outside intermediate",
        TLS1,
        _nginx("ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:", "ssl_ciphers AES128-SHA:ECDHE-ECDSA-AES128-GCM-SHA256:"),
        {"nginx"},
    ),
    ("compliant nginx.conf", TLS2, None, set()),
    (
        "HSTS of an hour",
        TLS2,
        _nginx(
            '"max-age=63072000; includeSubDomains" always;\n        add_header X-Content-Type-Options',
            '"max-age=3600" always;\n        add_header X-Content-Type-Options',
        ),
        {"nginx"},
    ),
    ("compliant nginx.conf", TLS5, None, set()),
    (
        "port 80 proxies instead of redirecting",
        TLS5,
        _nginx("return 301 https://flypotato.example.com$request_uri;", "location / { proxy_pass http://backend:80; }"),
        {"nginx"},
    ),
    ("compliant nginx.conf and keycloak", AUTH2, None, set()),
    (
        "the admin console proxied",
        AUTH2,
        _nginx(
            "location /sso/ {\n            return 404;", "location /sso/ {\n            proxy_pass $upstream_keycloak;"
        ),
        {"nginx"},
    ),
    ("keycloak with a removed option", AUTH2, Env("keycloak", "KC_PROXY", "edge"), {"keycloak"}),
    ("compliant prometheus.yml", SEC5, None, set()),
    (
        "a scrape job without the token",
        SEC5,
        _prometheus_job("keycloak", lambda job: job.pop("authorization")),
        {"prometheus"},
    ),
    (
        "a token file that is a config",
        SEC5,
        _prometheus_job("backend", lambda job: job.update(authorization={"credentials_file": PROMETHEUS_YML})),
        {"prometheus"},
    ),
    (
        "keycloak's management on every address",
        SEC5,
        Env("keycloak", "KC_HTTP_MANAGEMENT_HOST", "0.0.0.0"),
        {"keycloak"},
    ),
    (
        "oauth2-proxy's metrics on every address",
        SEC5,
        _oauth2_option('metrics_address = "127.0.0.1:9999"', 'metrics_address = "0.0.0.0:9999"'),
        {"oauth2_proxy"},
    ),
    ("compliant oauth2-proxy.cfg, a generated cookie secret", AUTH1, None, set()),
    (
        "cookie_samesite none",
        AUTH1,
        _oauth2_option('cookie_samesite = "lax"', 'cookie_samesite = "none"'),
        {"oauth2_proxy"},
    ),
]


@pytest.mark.parametrize(
    ("policy", "change", "expected"), [c[1:] for c in CASES], ids=[f"{c[1]}: {c[0]}" for c in CASES]
)
def test_swarm_file_case(policy: str, change: File | Env | None, expected: set[str]) -> None:
    swarm, host = _swarm(), _host()
    if change is not None:
        change.on_swarm(swarm)
        change.on_host(host)
    assert _found(swarm, policy) == {(policy, resource, M) for resource in expected}
    # The same messages as the container that receives the same files.
    assert _messages(swarm, policy) == _messages(host, policy)


def test_the_compliant_swarm_services_pass_every_rule_that_reads_files() -> None:
    swarm = _swarm()
    assert _found(swarm, *FILE_RULES) == set()
    nginx = next(s for s in _services(swarm) if s.service == "nginx")
    assert isinstance(nginx.uploads()[NGINX_CONF], str)  # read from the ServiceConfig, not vacuously passing


@pytest.mark.parametrize(
    ("service", "path"),
    [("nginx", NGINX_CONF), ("prometheus", PROMETHEUS_YML), ("oauth2_proxy", OAUTH2_CFG)],
)
def test_a_config_not_known_at_preview_is_reported_as_an_unknown_upload(service: str, path: str) -> None:
    swarm, host = _swarm(), _host()
    File(service, path, lambda _: Unknown()).on_swarm(swarm)
    File(service, path, lambda _: Unknown()).on_host(host)
    messages = _messages(swarm, *FILE_RULES)
    assert messages and all(resource == service for _, resource, _ in messages)
    assert all("not known at preview" in message for _, _, message in messages)
    assert messages == _messages(host, *FILE_RULES)
    assert {level for _, _, level in _found(swarm, *FILE_RULES)} == {M}


def test_an_unknown_nginx_conf_fails_the_rules_the_unknown_upload_fails() -> None:
    swarm = _swarm()
    File("nginx", NGINX_CONF, lambda _: Unknown()).on_swarm(swarm)
    assert _found(swarm, *FILE_RULES) == {(policy, "nginx", M) for policy in (NET6, TLS1, TLS2, TLS5, AUTH2)}


def test_a_config_named_by_an_unknown_name_is_the_one_the_service_depends_on() -> None:
    """At preview the reference's name may be unknown too: the ServiceConfig in the task spec's dependencies that
    no other reference names stands for it."""
    swarm = _swarm()
    [ref] = [ref for ref in _refs(swarm, "nginx") if ref["fileName"] == NGINX_CONF]
    ref["configName"] = UNKNOWN_WIRE
    assert _found(swarm, NET6, TLS1, TLS2, TLS5, AUTH2) == set()

    # Two references of unknown name and two such dependencies: which is which is not known, nothing is guessed.
    for other in _refs(swarm, "nginx"):
        other["configName"] = UNKNOWN_WIRE
    assert _found(swarm, TLS1) == {(TLS1, "nginx", M)}
    [message] = _messages(swarm, TLS1)
    assert f"{NGINX_CONF} is not known at preview" in message[2]


def test_a_config_named_otherwise_than_every_config_of_the_stack_is_not_checked_as_one_of_them() -> None:
    swarm = _swarm()
    [ref] = [ref for ref in _refs(swarm, "nginx") if ref["fileName"] == NGINX_CONF]
    ref["configName"] = "fly-potato-prod-nginx-nginx-conf-000000000000"  # e.g. made outside the stack
    assert _found(swarm, TLS1) == {(TLS1, "nginx", M)}


def test_an_nginx_service_without_nginx_conf_fails_as_the_container_does() -> None:
    swarm, host = _swarm(), _host()
    containerspec = swarm.by_name("nginx").inputs["taskSpec"]["containerSpec"]
    containerspec["configs"] = [ref for ref in containerspec["configs"] if ref["fileName"] != NGINX_CONF]
    edit_inputs(host.files_containers()["nginx"], "uploads", lambda ups: [u for u in ups if u["file"] != NGINX_CONF])
    assert _found(swarm, TLS1, TLS2) == {(TLS1, "nginx", M), (TLS2, "nginx", M)}
    assert _messages(swarm, *FILE_RULES) == _messages(host, *FILE_RULES)
    assert any(
        f"{NGINX_CONF} is not among the files the nginx container receives" in m for _, _, m in _messages(swarm, TLS1)
    )


def test_secrets_are_never_read() -> None:
    """A Swarm secret's content is UNKNOWN to the rules even when the engine passes it: its path is known (a file
    the task receives) and its provenance decides (R-AUTH-1's cookie secret)."""
    swarm = _swarm()
    oauth2_proxy = next(s for s in _services(swarm) if s.service == "oauth2_proxy")
    assert oauth2_proxy.uploads()[COOKIE_SECRET] is UNKNOWN
    assert isinstance(oauth2_proxy.uploads()[OAUTH2_CFG], str)

    cookie = swarm.by_name("oauth2_proxy-oauth2_cookie_secret")
    cookie.property_dependencies.clear()  # a secret not generated by the stack
    assert _found(swarm, AUTH1) == {(AUTH1, "oauth2_proxy", M)}
    [(_, _, message)] = _messages(swarm, AUTH1)
    assert "does not come from a RandomPassword of 43 letters and digits" in message


def test_the_metrics_token_must_be_a_secret_readable_by_its_owner_only() -> None:
    swarm = _swarm()
    secrets = swarm.by_name("prometheus").inputs["taskSpec"]["containerSpec"]["secrets"]
    [token] = [ref for ref in secrets if ref["fileName"] == METRICS_TOKEN]
    token["fileMode"] = 0o440
    assert _found(swarm, SEC5) == {(SEC5, "prometheus", M)}
    assert all(f"{METRICS_TOKEN} is not a secret file (0400)" in m for _, _, m in _messages(swarm, SEC5))


def _services(graph: ProgramGraph) -> list[ServiceView]:
    """The services as a stack policy sees them, with the files they receive."""
    props = {r.urn: crossguard.policy_props(r) for r in graph.resources}
    return StackView.of(StackValidationArgs(crossguard._stack_resources(graph, props), {}, {})).services()
