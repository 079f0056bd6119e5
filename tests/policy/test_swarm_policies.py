"""The pack on Swarm services (``target: swarm``): hand-made ``docker.Service`` resources, shaped as the engine
passes them to CrossGuard (camelCase inputs of pulumi-docker 5.1.0), checked through the offline plan's
CrossGuard re-implementation. Exact sets of (policy, resource, level), checkov style."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from policy import context
from policy.props import ServiceView, plain
from policy_plan import crossguard
from policy_plan.program import PlannedResource, ProgramGraph
from tests.policy.support import TODAY
from wire import SERVICE_LABEL, STACK_LABEL, ZONE_LABEL, ZONES_LABEL

M = "mandatory"
STACK = "prod"
DIGEST = "sha256:" + "ab" * 32
REGISTRY_IMAGE = f"198.18.232.1:5000/fly-potato/nginx@{DIGEST}"
EDGE = "node.labels.fly-potato.role==edge"
SERVICE = "docker:index/service:Service"
NETWORK = "docker:index/network:Network"
RANDOM = "random:index/randomPassword:RandomPassword"


def _urn(type_: str, name: str) -> str:
    return f"urn:pulumi:{STACK}::fly-potato::{type_}::{name}"


def _network(zone: str, *, driver: str = "overlay", internal: bool | None = None) -> PlannedResource:
    name = f"fly-potato-{STACK}-{zone}"
    inputs: dict[str, Any] = {
        "name": name,
        "driver": driver,
        "attachable": False,
        "internal": zone != "edge" if internal is None else internal,
        "labels": [{"label": ZONE_LABEL, "value": zone}, {"label": STACK_LABEL, "value": STACK}],
    }
    return PlannedResource(_urn(NETWORK, f"zones-{zone}"), NETWORK, f"zones-{zone}", inputs, True, "", [], {})


def _service(
    service: str,
    zones: tuple[str, ...],
    *,
    image: str = REGISTRY_IMAGE,
    ports: list[dict[str, Any]] | None = None,
    constraints: list[str] | None = None,
    one_shot: bool = False,
) -> PlannedResource:
    labels = [
        {"label": SERVICE_LABEL, "value": service},
        {"label": STACK_LABEL, "value": STACK},
        {"label": ZONES_LABEL, "value": ",".join(zones)},
    ]
    inputs: dict[str, Any] = {
        "name": f"fly-potato-{STACK}-{service}",
        "labels": labels,
        "mode": {"replicated": {"replicas": 1}},
        "taskSpec": {
            "containerSpec": {
                "image": image,
                "user": "10001:10001",
                "readOnly": True,
                "capDrops": ["ALL"],
                "env": {"LOG_LEVEL": "info", "DB_PASSWORD_FILE": "/run/secrets/db_password"},
                "healthcheck": {"tests": ["CMD", "true"], "interval": "10s", "timeout": "3s", "retries": 3},
                "labels": copy.deepcopy(labels),
                "secrets": [{"secretId": "s1", "secretName": "db_password", "fileName": "/run/secrets/db_password"}],
            },
            "placement": {"constraints": constraints if constraints is not None else []},
            "resources": {"limits": {"memoryBytes": 268435456, "nanoCpus": 500000000}},
            "restartPolicy": {"condition": "none" if one_shot else "any", "maxAttempts": 0},
            "networksAdvanceds": [{"name": f"fly-potato-{STACK}-{zone}", "aliases": [service]} for zone in zones],
            "logDriver": {"name": "json-file", "options": {"max-size": "10m", "max-file": "3"}},
        },
    }
    if not one_shot:
        inputs["updateConfig"] = {"order": "start-first", "failureAction": "rollback", "parallelism": 1}
    if ports is not None:
        inputs["endpointSpec"] = {"mode": "vip", "ports": ports}
    return PlannedResource(_urn(SERVICE, service), SERVICE, service, inputs, True, "", [], {})


def _port(published: int, target: int, mode: str | None = "host") -> dict[str, Any]:
    port: dict[str, Any] = {"targetPort": target, "publishedPort": published, "protocol": "tcp"}
    if mode is not None:
        port["publishMode"] = mode
    return port


NGINX_PORTS = [_port(443, 8443), _port(80, 8080)]


def _swarm() -> ProgramGraph:
    """A small, compliant prod stack on swarm: nginx on the edge nodes, backend, postgres, the migration job."""
    resources = [
        *(_network(zone) for zone in ("edge", "app", "data")),
        _service("nginx", ("edge", "app"), ports=copy.deepcopy(NGINX_PORTS), constraints=[EDGE]),
        _service("backend", ("app", "data"), constraints=["node.labels.fly-potato.role==app"]),
        _service("postgres", ("data",), constraints=["node.labels.fly-potato.role==data"]),
        _service("migration", ("data",), one_shot=True),
    ]
    return ProgramGraph(STACK, {"profile": "prod"}, resources, {})


def _spec(graph: ProgramGraph, service: str) -> dict[str, Any]:
    return graph.by_name(service).inputs["taskSpec"]


def _check(graph: ProgramGraph, policy: str) -> set[tuple[str, str, str]]:
    result = crossguard.run(graph, context.make(graph.stack, graph.config, today=TODAY))
    return {(v.policy, v.resource, v.level) for v in result.violations if v.policy == policy}


def _messages(graph: ProgramGraph, policy: str) -> list[str]:
    result = crossguard.run(graph, context.make(graph.stack, graph.config, today=TODAY))
    return [v.message for v in result.violations if v.policy == policy]


def test_a_compliant_swarm_stack_passes_every_policy() -> None:
    result = crossguard.run(_swarm(), context.make(STACK, {"profile": "prod"}, today=TODAY))
    swarm_rules = {
        "public-bindings-nginx-only",
        "other-bindings-loopback",
        "zone-membership",
        "egress-allow-list",
        "no-plaintext-secret-env",
        "container-hardening",
        "image-digest-pinned",
    }
    assert [v for v in result.violations if v.policy in swarm_rules] == []


def _edit(service: str, change: Callable[[dict[str, Any]], None]) -> Callable[[ProgramGraph], None]:
    def mutate(graph: ProgramGraph) -> None:
        change(graph.by_name(service).inputs)

    return mutate


def _publish(service: str, *ports: dict[str, Any]) -> Callable[[ProgramGraph], None]:
    return _edit(service, lambda inputs: inputs.__setitem__("endpointSpec", {"mode": "vip", "ports": list(ports)}))


def _container(service: str, key: str, value: Any) -> Callable[[ProgramGraph], None]:
    def change(inputs: dict[str, Any]) -> None:
        if value is None:
            inputs["taskSpec"]["containerSpec"].pop(key, None)
        else:
            inputs["taskSpec"]["containerSpec"][key] = value

    return _edit(service, change)


def _task(service: str, key: str, value: Any) -> Callable[[ProgramGraph], None]:
    def change(inputs: dict[str, Any]) -> None:
        if value is None:
            inputs["taskSpec"].pop(key, None)
        else:
            inputs["taskSpec"][key] = value

    return _edit(service, change)


def _env(service: str, name: str, value: str) -> Callable[[ProgramGraph], None]:
    return _edit(service, lambda inputs: inputs["taskSpec"]["containerSpec"]["env"].__setitem__(name, value))


def _generated_secret_in_task_spec(graph: ProgramGraph) -> None:
    secret = PlannedResource(_urn(RANDOM, "db-password"), RANDOM, "db-password", {"length": 32}, True, "", [], {})
    graph.resources.append(secret)
    backend = graph.by_name("backend")
    backend.inputs["taskSpec"]["containerSpec"]["env"]["DB_URL"] = "postgresql://app:x@postgres/app"
    backend.property_dependencies["taskSpec"] = [secret.urn]


def _network_driver(zone: str, driver: str) -> Callable[[ProgramGraph], None]:
    def mutate(graph: ProgramGraph) -> None:
        graph.by_name(f"zones-{zone}").inputs["driver"] = driver

    return mutate


def _networks_by_unknown_id(service: str, zones: tuple[str, ...]) -> Callable[[ProgramGraph], None]:
    """As a component passes ``id=network.id``: unknown at preview; the dependencies tell the zones."""

    def mutate(graph: ProgramGraph) -> None:
        target = graph.by_name(service)
        target.inputs["taskSpec"]["networksAdvanceds"] = [
            {"id": crossguard.UNKNOWN_WIRE, "aliases": [service]} for _ in zones
        ]
        target.property_dependencies["taskSpec"] = [graph.by_name(f"zones-{zone}").urn for zone in zones]

    return mutate


NET1, NET4, SEC1, SEC2, SEC3 = (
    "public-bindings-nginx-only",
    "zone-membership",
    "no-plaintext-secret-env",
    "container-hardening",
    "image-digest-pinned",
)

CASES: list[tuple[str, str, Callable[[ProgramGraph], None] | None, set[tuple[str, str]]]] = [
    # R-NET-1
    ("good nginx", NET1, None, set()),
    (
        "nginx 443 in ingress mode",
        NET1,
        _publish("nginx", _port(443, 8443, "ingress"), _port(80, 8080)),
        {("nginx", M)},
    ),
    ("nginx 443 in the default (ingress) mode", NET1, _publish("nginx", _port(443, 8443, None)), {("nginx", M)}),
    ("backend publishes 8000", NET1, _publish("backend", _port(8000, 8000)), {("backend", M)}),
    ("postgres publishes 5433", NET1, _publish("postgres", _port(5433, 5432)), {("postgres", M)}),
    ("nginx without the edge constraint", NET1, _task("nginx", "placement", {"constraints": []}), {("nginx", M)}),
    ("nginx publishes 8443 too", NET1, _publish("nginx", *NGINX_PORTS, _port(8443, 8443)), {("nginx", M)}),
    ("nginx publishes nothing", NET1, _edit("nginx", lambda inputs: inputs.pop("endpointSpec")), {("nginx", M)}),
    # R-SEC-3
    ("prod image by tag", SEC3, _container("backend", "image", "fly-potato/backend:1.4"), {("backend", M)}),
    ("registry digest", SEC3, _container("backend", "image", f"198.18.232.1:5000/fly-potato/backend@{DIGEST}"), set()),
    # R-SEC-2
    ("root user", SEC2, _container("backend", "user", "0:0"), {("backend", M)}),
    ("no user", SEC2, _container("backend", "user", None), {("backend", M)}),
    ("writable root fs", SEC2, _container("backend", "readOnly", None), {("backend", M)}),
    ("capabilities kept", SEC2, _container("postgres", "capDrops", ["NET_RAW"]), {("postgres", M)}),
    ("capability added", SEC2, _container("postgres", "capAdds", ["SYS_ADMIN"]), {("postgres", M)}),
    ("no memory limit", SEC2, _task("backend", "resources", {"limits": {"nanoCpus": 500000000}}), {("backend", M)}),
    ("no healthcheck", SEC2, _container("backend", "healthcheck", None), {("backend", M)}),
    ("no restart policy", SEC2, _task("backend", "restartPolicy", None), {("backend", M)}),
    ("unrotated logs", SEC2, _task("backend", "logDriver", None), {("backend", M)}),
    ("one-shot without healthcheck", SEC2, _container("migration", "healthcheck", None), set()),
    # R-SEC-1
    ("password in env", SEC1, _env("backend", "DB_PASSWORD", "hunter2hunter2"), {("backend", M)}),
    ("a _FILE holding a value", SEC1, _env("backend", "JWT_SECRET_FILE", "s3cr3t"), {("backend", M)}),
    ("env from a generated secret", SEC1, _generated_secret_in_task_spec, {("backend", M)}),
    # R-NET-4
    ("postgres in app", NET4, _edit("postgres", lambda i: _join(i, "app")), {("postgres", M)}),
    ("backend in edge", NET4, _edit("backend", lambda i: _join(i, "edge")), {("backend", M)}),
    (
        "zones as bridge networks",
        NET4,
        _network_driver("data", "bridge"),
        {("backend", M), ("postgres", M), ("migration", M)},
    ),
    ("networks by id, zones from dependencies", NET4, _networks_by_unknown_id("postgres", ("data",)), set()),
    ("networks by id into app", NET4, _networks_by_unknown_id("postgres", ("data", "app")), {("postgres", M)}),
]


def _join(inputs: dict[str, Any], zone: str) -> None:
    inputs["taskSpec"]["networksAdvanceds"].append({"name": f"fly-potato-{STACK}-{zone}", "aliases": []})
    for label in inputs["labels"]:
        if label["label"] == ZONES_LABEL:
            label["value"] += f",{zone}"


@pytest.mark.parametrize(("policy", "mutate", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_swarm_case(policy: str, mutate: Callable[[ProgramGraph], None] | None, expected: set[tuple[str, str]]) -> None:
    graph = _swarm()
    if mutate is not None:
        mutate(graph)
    assert _check(graph, policy) == {(policy, resource, level) for resource, level in expected}


def test_messages_name_the_resource_the_input_and_the_fix() -> None:
    graph = _swarm()
    _publish("postgres", _port(5433, 5432))(graph)
    [message] = _messages(graph, NET1)
    assert "docker.Service postgres" in message and "endpoint_spec.ports" in message
    assert "SSH tunnel" in message and "remove the publish" in message

    graph = _swarm()
    _publish("nginx", _port(443, 8443, "ingress"))(graph)
    messages = _messages(graph, NET1)
    assert any("ingress mode" in m and "publish_mode='host'" in m for m in messages), messages
    assert any("does not publish 443/tcp in host mode" in m for m in messages), messages

    graph = _swarm()
    _container("backend", "user", "0:0")(graph)
    [message] = _messages(graph, SEC2)
    assert "docker.Service backend" in message and "container_spec.user" in message and "non-root" in message

    graph = _swarm()
    _env("backend", "DB_PASSWORD", "hunter2hunter2")(graph)
    [message] = _messages(graph, SEC1)
    assert "container_spec.env" in message and "DB_PASSWORD" in message and "docker.Secret" in message


def test_dev_swarm_keeps_the_publish_rules_at_its_level() -> None:
    """On swarm a publish is never on loopback: the publish rules hold in every profile (advisory on dev)."""
    graph = _swarm()
    graph.stack, graph.config = "dev", {"profile": "dev"}
    _publish("postgres", _port(5433, 5432))(graph)
    assert _check(graph, NET1) == {(NET1, "postgres", "advisory")}
    assert _check(graph, SEC3) == set()  # digests are a prod rule


def test_the_engine_shape_with_provider_defaults_is_read_the_same() -> None:
    """What the engine passes after the provider's Check: wire numbers (doubles) and the bridge's __defaults."""
    graph = _swarm()
    nginx = graph.by_name("nginx")
    nginx.inputs["__defaults"] = []
    nginx.inputs["endpointSpec"]["ports"][0]["__defaults"] = ["protocol"]
    props = crossguard.policy_props(nginx)
    view = ServiceView("nginx", nginx.urn, plain(props))
    assert [(b.host_port, b.container_port, b.mode) for b in view.bindings()] == [
        (443, 8443, "host"),
        (80, 8080, "host"),
    ]
    assert view.constraints() == [EDGE] and view.image == REGISTRY_IMAGE
    assert _check(graph, NET1) == set()


def test_the_pack_process_judges_a_service_as_the_offline_plan_does() -> None:
    """The engine's side: the pack started as the CLI starts it, sent one Service over gRPC (a resource-level
    analysis), reports what the offline plan reports for the same inputs."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import grpc
    from google.protobuf import struct_pb2
    from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

    graph = _swarm()
    _container("backend", "user", "0:0")(graph)
    _container("backend", "image", "fly-potato/backend:1.4")(graph)
    backend = graph.by_name("backend")
    policy_dir = Path(__file__).resolve().parents[2] / "policy"
    env = {
        **os.environ,
        "PULUMI_PROJECT": "fly-potato",
        "PULUMI_STACK": STACK,
        "PULUMI_DRY_RUN": "true",
        "PULUMI_CONFIG": json.dumps({"fly-potato:profile": "prod"}),
    }
    process = subprocess.Popen(
        [sys.executable, str(policy_dir / "__main__.py")], stdout=subprocess.PIPE, env=env, cwd=policy_dir
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            properties = struct_pb2.Struct()
            properties.update(crossguard.to_wire(backend.inputs))
            response = analyzer_pb2_grpc.AnalyzerStub(channel).Analyze(
                analyzer_pb2.AnalyzeRequest(type=SERVICE, properties=properties, urn=backend.urn, name=backend.name)
            )
    finally:
        process.terminate()
        process.wait(timeout=10)
    # The SDK puts the policy's description before the message.
    engine = sorted((d.policyName, d.message.split("\n", 1)[-1]) for d in response.diagnostics)
    result = crossguard.run(graph, context.make(STACK, {"profile": "prod"}, today=TODAY))
    offline = sorted(
        (v.policy, v.message) for v in result.violations if v.urn == backend.urn and v.policy in (SEC2, SEC3)
    )
    assert engine == offline and {p for p, _ in engine} == {SEC2, SEC3}


def test_dev_on_swarm_publishes_nothing_r_net_3_mandatory() -> None:
    """R-NET-3 holds on swarm: a host-mode port binds every address of a node, so a dev service publishes nothing."""
    graph = _swarm()
    graph.stack, graph.config = "dev", {"profile": "dev"}
    assert _check(graph, "dev-bindings-loopback") == {("dev-bindings-loopback", "nginx", "mandatory")}
    messages = _messages(graph, "dev-bindings-loopback")
    assert [m.split(" (docker.Service")[0] for m in messages] == [
        "nginx 0.0.0.0:443->8443/tcp (host mode)",
        "nginx 0.0.0.0:80->8080/tcp (host mode)",
    ]
    assert all("is published on every address of its nodes" in m and "target = host" in m for m in messages)
    _edit("nginx", lambda inputs: inputs["endpointSpec"].pop("ports"))(graph)
    assert _check(graph, "dev-bindings-loopback") == set()
    graph.stack, graph.config = STACK, {"profile": "prod"}
    _publish("nginx", *copy.deepcopy(NGINX_PORTS))(graph)
    assert _check(graph, "dev-bindings-loopback") == set()  # prod: R-NET-1/2 decide


def test_the_swarm_operator_overlay_is_internal_and_needs_no_masquerade_option() -> None:
    """R-NET-5: the operator zone may not reach outside. On a host its bridge publishes (so it is not internal) and
    must not masquerade; a swarm's operator overlay is internal, which already reaches nothing."""
    graph = _swarm()
    graph.resources.append(_network("operator", internal=True))
    assert _check(graph, "egress-allow-list") == set()
    graph.resources[-1] = _network("operator", internal=False)
    assert _check(graph, "egress-allow-list") == {("egress-allow-list", "zones-operator", "mandatory")}
