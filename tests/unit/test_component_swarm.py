"""components.swarm alone under the mocks: SwarmZones (overlay per zone), HardenedService (the docker.Service
counterpart of HardenedContainer) with its Swarm configs and secrets, and the placement of each service."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pulumi
import pulumi_docker as docker
import pytest

from components.catalog import SERVICES, Resources, Zone
from components.settings import SwarmConfig, parse_settings
from components.swarm import (
    HardenedService,
    HardenedServiceArgs,
    HostPort,
    Probe,
    ServiceFile,
    SwarmZones,
    SwarmZonesArgs,
    content_name,
    manager_provider,
    placement_of,
    zones_args_of,
)
from components.swarm.service import provider_duration
from policy_plan.program import stack_config
from tests.support.components import component_graph
from wire import GROUP_LABEL, PROJECT_LABEL, SERVICE_LABEL, STACK_LABEL, ZONE_LABEL, ZONES_LABEL

NETWORK = "docker:index/network:Network"
SERVICE = "docker:index/service:Service"
SECRET = "docker:index/secret:Secret"
CONFIG = "docker:index/serviceConfig:ServiceConfig"
PROVIDER = "pulumi:providers:docker"
MANAGER = "unix:///run/fly-potato-swarm/node1.sock"
IMAGE = f"198.18.232.1:5000/fly-potato/nginx@sha256:{'ab' * 32}"
PROBE = Probe(["CMD", "true"])


def _zones_args(encrypted: bool = True) -> SwarmZonesArgs:
    return SwarmZonesArgs(
        project="fly-potato",
        stack="s1",
        internal={zone: zone in {Zone.APP, Zone.DATA, Zone.MONITORING} for zone in Zone},
        encrypted=encrypted,
    )


def _labels(items: list[dict[str, str]]) -> dict[str, str]:
    return {item["label"]: item["value"] for item in items}


def _nginx(**overrides: Any) -> HardenedServiceArgs:
    fields: dict[str, Any] = {
        "project": "fly-potato",
        "stack": "s1",
        "service": "nginx",
        "image": IMAGE,
        "healthcheck": PROBE,
        "resources": Resources(cpus=0.5, memory_mb=256, pids=64),
        "replicas": 2,
        "constraints": ["node.labels.fly-potato.role==edge"],
        "max_replicas_per_node": 1,
        "ports": [HostPort(8443, 18443)],
        "files": [
            ServiceFile("/etc/fly-potato/nginx.conf", "events {}\n"),
            ServiceFile("/etc/fly-potato/secrets/tls.key", "KEY", secret=True, mode=0o400),
        ],
    }
    return HardenedServiceArgs(**(fields | overrides))


def _graph(build: Any) -> Any:
    def program(*_: Any) -> None:
        provider = docker.Provider("manager", host=MANAGER)
        build(pulumi.ResourceOptions(provider=provider))

    return component_graph("dev", program)


def test_swarm_zones_are_attachable_overlays_internal_as_on_the_host_and_encrypted() -> None:
    graph = _graph(lambda opts: SwarmZones("sz", _zones_args(), opts))
    networks = {r.name: r for r in graph.of_type(NETWORK) if r.name.startswith("sz-")}
    assert set(networks) == {f"sz-{zone.value}" for zone in Zone}
    (provider,) = graph.of_type(PROVIDER)
    for zone in Zone:
        network = networks[f"sz-{zone.value}"]
        assert network.prop("name") == f"fly-potato-s1-{zone.value}"
        assert network.prop("driver") == "overlay"
        assert network.prop("attachable") is True
        assert bool(network.prop("internal")) == (zone in {Zone.APP, Zone.DATA, Zone.MONITORING})
        assert network.prop("options") == {"encrypted": "true"}
        assert _labels(network.prop("labels")) == {
            PROJECT_LABEL: "fly-potato",
            STACK_LABEL: "s1",
            ZONE_LABEL: zone.value,
        }
        assert network.provider.startswith(provider.urn), "the manager's provider reaches the networks"


def test_swarm_zones_unencrypted_where_the_kernel_has_no_esp() -> None:
    graph = _graph(lambda opts: SwarmZones("sz", _zones_args(encrypted=False), opts))
    assert all(not r.prop("options") for r in graph.of_type(NETWORK) if r.name.startswith("sz-"))


def _service_graph(args: HardenedServiceArgs) -> Any:
    def build(opts: pulumi.ResourceOptions) -> None:
        zones = SwarmZones("sz", _zones_args(), opts)
        HardenedService("web", args, zones, opts)

    return _graph(build)


def test_hardened_service_carries_the_hardening_of_the_catalog() -> None:
    graph = _service_graph(_nginx())
    (service,) = graph.of_type(SERVICE)
    assert service.prop("name") == "fly-potato-s1-nginx"
    spec = service.prop("taskSpec")
    container = spec["containerSpec"]
    assert container["user"] == SERVICES["nginx"].user == "10040:10040"
    assert container["readOnly"] is True
    assert container["capDrops"] == ["ALL"]
    assert container["init"] is True
    assert "capAdds" not in container
    assert container["healthcheck"]["tests"] == ["CMD", "true"]
    assert container["mounts"] == [
        {"type": "tmpfs", "target": "/tmp", "tmpfsOptions": {"sizeBytes": 64 * 1024 * 1024, "mode": 0o1777}}
    ]
    assert spec["resources"]["limits"] == {"nanoCpus": 500_000_000, "memoryBytes": 256 * 1024 * 1024}
    assert spec["restartPolicy"]["condition"] == "any"
    assert spec["logDriver"] == {"name": "json-file", "options": {"max-size": "10m", "max-file": "5"}}
    labels = {
        STACK_LABEL: "s1",
        PROJECT_LABEL: "fly-potato",
        SERVICE_LABEL: "nginx",
        GROUP_LABEL: "edge",
        ZONES_LABEL: "app,edge,monitoring",
    }
    assert _labels(service.prop("labels")) == labels
    assert _labels(container["labels"]) == labels


def test_hardened_service_is_replicated_placed_and_rolls_back() -> None:
    graph = _service_graph(_nginx())
    (service,) = graph.of_type(SERVICE)
    assert service.prop("mode") == {"replicated": {"replicas": 2}}
    spec = service.prop("taskSpec")
    assert spec["placement"] == {
        "constraints": ["node.labels.fly-potato.role==edge"],
        "maxReplicas": 1,
        # Given as Docker would record it from the image's manifest, so a later preview shows no drift.
        "platforms": [{"os": "linux", "architecture": "amd64"}],
    }
    assert service.prop("endpointSpec") == {
        "mode": "dnsrr",
        "ports": [{"targetPort": 8443, "publishedPort": 18443, "protocol": "tcp", "publishMode": "host"}],
    }
    update = service.prop("updateConfig")
    assert (update["failureAction"], update["order"], update["parallelism"]) == ("rollback", "stop-first", 1)
    networks = {n["name"]: n["aliases"] for n in spec["networksAdvanceds"]}
    assert networks == {f"sz-{z}-id": ["nginx"] for z in ("app", "edge", "monitoring")}


def test_a_service_without_host_ports_updates_start_first_unpublished() -> None:
    args = _nginx(service="backend", ports=(), constraints=(), max_replicas_per_node=None, files=())
    (service,) = _service_graph(args).of_type(SERVICE)
    assert service.prop("updateConfig")["order"] == "start-first"
    assert service.prop("rollbackConfig")["order"] == "start-first"
    assert service.prop("endpointSpec") == {"mode": "dnsrr"}
    assert service.prop("taskSpec")["placement"] == {"platforms": [{"os": "linux", "architecture": "amd64"}]}


def test_a_service_with_a_named_volume_stops_its_old_task_first() -> None:
    """Two tasks on one data directory would be two servers on it (PostgreSQL's lock file cannot tell another
    container's postmaster from a stale one): the old task stops before the new one starts."""
    args = _nginx(service="postgres", ports=(), files=(), volumes={"fly-potato-s1-pgdata": "/var/lib/postgresql"})
    (service,) = _service_graph(args).of_type(SERVICE)
    assert service.prop("updateConfig")["order"] == "stop-first"
    assert service.prop("rollbackConfig")["order"] == "stop-first"


@pytest.mark.parametrize(
    ("given", "read_back"),
    [("10s", "10s"), ("90s", "1m30s"), ("60s", "1m"), ("1m0s", "1m"), ("3m0s", "3m"), ("0s", "0s"), ("1h", "1h")],
)
def test_durations_are_written_as_the_provider_reads_them_back(given: str, read_back: str) -> None:
    """pulumi-docker reads a service's durations back in Go's format without a trailing zero unit (its shortDur):
    anything else is a change at every up (a rolling update of the service)."""
    assert provider_duration(given) == read_back
    args = _nginx(healthcheck=Probe(["CMD", "true"], start_period=given), stop_grace_period=given, update_monitor=given)
    (service,) = _service_graph(args).of_type(SERVICE)
    container = service.prop("taskSpec")["containerSpec"]
    assert (container["stopGracePeriod"], container["healthcheck"]["startPeriod"]) == (read_back, read_back)
    assert service.prop("updateConfig")["monitor"] == service.prop("rollbackConfig")["monitor"] == read_back


def test_files_become_hash_named_configs_and_secrets_owned_by_the_service() -> None:
    graph = _service_graph(_nginx())
    (config,) = graph.of_type(CONFIG)
    (secret,) = graph.of_type(SECRET)
    assert config.prop("name") == content_name("fly-potato-s1-nginx-nginx-conf", "events {}\n")
    assert config.prop("name").endswith("-" + hashlib.sha256(b"events {}\n").hexdigest()[:12])
    assert base64.b64decode(config.prop("data")) == b"events {}\n"
    assert secret.prop("name") == content_name("fly-potato-s1-nginx-secrets-tls-key", "KEY")
    assert base64.b64decode(secret.prop("data")) == b"KEY"
    assert _labels(secret.prop("labels"))[SERVICE_LABEL] == "nginx"
    container = graph.of_type(SERVICE)[0].prop("taskSpec")["containerSpec"]
    (ref,) = container["configs"]
    assert (ref["fileName"], ref["fileUid"], ref["fileGid"], ref["fileMode"]) == (
        "/etc/fly-potato/nginx.conf",
        "10040",
        "10040",
        0o440,
    )
    (ref,) = container["secrets"]
    assert (ref["fileName"], ref["fileUid"], ref["fileGid"], ref["fileMode"]) == (
        "/etc/fly-potato/secrets/tls.key",
        "10040",
        "10040",
        0o400,
    )


def test_new_content_is_a_new_name() -> None:
    assert content_name("p", "a") != content_name("p", "b")
    assert len(content_name("x" * 100, "a")) == 64


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: _nginx(healthcheck=None), "needs a healthcheck"),
        (lambda: _nginx(service="nope"), "not in the catalog"),
        (lambda: _nginx(replicas=0), "run at least 1 task"),
        (lambda: ServiceFile("/etc/passwd", "x"), "under /etc/fly-potato"),
        (lambda: ServiceFile("/etc/fly-potato/key", "x", secret=True), "under /etc/fly-potato/secrets"),
        (lambda: ServiceFile("/etc/fly-potato/a", "x", mode=0o444), "gives other uids access"),
    ],
)
def test_refusals(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_a_host_port_on_internal_zones_only_is_refused() -> None:
    def build(opts: pulumi.ResourceOptions) -> None:
        zones = SwarmZones("sz", _zones_args(), opts)
        HardenedService("web", _nginx(zones=[Zone.APP]), zones, opts)

    with pytest.raises(ValueError, match="silently not publish"):
        _graph(build)


def test_placement_by_role() -> None:
    swarm = SwarmConfig(replicas=3)
    assert placement_of(swarm, "nginx").constraints == ("node.labels.fly-potato.role==edge",)
    assert placement_of(swarm, "nginx").max_replicas_per_node == 1
    assert placement_of(swarm, "backend").replicas == 3
    assert placement_of(swarm, "oauth2_proxy").replicas == 3
    assert placement_of(swarm, "postgres").constraints == ("node.labels.fly-potato.role==data",)
    assert placement_of(swarm, "postgres").replicas == 1
    assert placement_of(swarm, "keycloak").constraints == ()


def test_zones_and_the_provider_from_the_settings() -> None:
    overrides = {"target": "swarm", "swarm.docker_host": MANAGER, "swarm.encrypt_overlays": False}
    overrides |= {"publish.nginx_http": "none"}  # R-NET-3: dev on a swarm publishes nothing
    settings = parse_settings(stack_config("prod", overrides | {"target": "host"}), stack="prod")
    args = zones_args_of(settings)
    assert (args.project, args.stack, args.encrypted) == ("fly-potato", "prod", False)
    assert {z for z, internal in args.internal.items() if internal} == {Zone.APP, Zone.DATA, Zone.MONITORING}

    def build(_: pulumi.ResourceOptions) -> None:
        swarm = parse_settings(stack_config("dev", overrides), stack="dev")
        SwarmZones("fromsettings", zones_args_of(swarm), pulumi.ResourceOptions(provider=manager_provider(swarm)))

    graph = _graph(build)
    providers = {r.name: r for r in graph.of_type(PROVIDER)}
    assert providers["swarm-manager"].prop("host") == MANAGER
    # Every zone but the operator's: a swarm publish binds all of a node's addresses, operators use an SSH tunnel.
    networks = {r.name for r in graph.of_type(NETWORK) if r.name.startswith("fromsettings-")}
    assert networks == {f"fromsettings-{zone.value}" for zone in Zone if zone is not Zone.OPERATOR}
