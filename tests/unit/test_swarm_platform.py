"""The whole program on ``target: swarm`` under the mocks (components/swarm/platform.py): which services run
where and how many, the operator proxy as the only way to Postgres and Keycloak (loopback of the manager, a fixed
address pg_hba names), the one-shot migration on the manager behind its gate, files as Swarm configs and
secrets, and the pack's verdict on the graph, as a deploy and as a preview of a new stack."""

from __future__ import annotations

import base64
import ipaddress
from datetime import date
from typing import Any

import pytest

from components import preflight
from components.catalog import Zone
from components.hardened_container import Healthcheck
from components.host_guardrails import DockerHost
from components.settings import parse_settings
from components.swarm import service as swarm_service
from components.swarm import specs
from components.swarm.operator_proxy import proxy_address, render_conf
from policy import context
from policy_plan import crossguard
from policy_plan.program import PlannedResource, ProgramGraph, evaluate_program, stack_config
from tests.unit.test_edge import PROVIDED
from wire import SERVICE_LABEL, ZONE_LABEL

SERVICE = "docker:index/service:Service"
CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
SECRET = "docker:index/secret:Secret"
CONFIG = "docker:index/serviceConfig:ServiceConfig"
MANAGER = "unix:///run/fly-potato-swarm/node1.sock"
REGISTRY = "198.18.232.1:5000"
TODAY = date(2026, 11, 28)


def swarm_overrides(**extra: Any) -> dict[str, Any]:
    images = {
        f"images.{name}": f"{REGISTRY}/fly-potato/{name.replace('_', '-')}@sha256:{'cd' * 32}"
        for name in stack_config("dev")["images"]
    }
    images["images.migration"] = images["images.backend"]
    return {
        "target": "swarm",
        "swarm.docker_host": MANAGER,
        "swarm.registry": REGISTRY,
        "swarm.encrypt_overlays": False,
        "features.monitoring": False,
        "features.backups": False,
        "publish.nginx_http": "none",  # R-NET-3: dev on a swarm publishes nothing
        **images,
        **extra,
    }


@pytest.fixture(scope="module")
def graph() -> ProgramGraph:
    result = evaluate_program("dev", swarm_overrides())
    assert result.error is None, result.error
    return result


def _labels(items: list[dict[str, str]] | None) -> dict[str, str]:
    return {item["label"]: item["value"] for item in items or []}


def _services(graph: ProgramGraph) -> dict[str, PlannedResource]:
    return {_labels(r.prop("labels"))[SERVICE_LABEL]: r for r in graph.of_type(SERVICE)}


def _zones(graph: ProgramGraph) -> dict[str, str]:
    """network resource urn -> zone."""
    return {r.urn: _labels(r.prop("labels"))[ZONE_LABEL] for r in graph.of_type(NETWORK)}


def test_the_platform_runs_as_five_services_placed_by_role(graph: ProgramGraph) -> None:
    services = _services(graph)
    assert set(services) == {"postgres", "keycloak", "oauth2_proxy", "backend", "nginx"}
    replicas = {k: r.prop("mode")["replicated"]["replicas"] for k, r in services.items()}
    assert replicas == {"postgres": 1, "keycloak": 1, "oauth2_proxy": 2, "backend": 2, "nginx": 2}
    placement = {k: r.prop("taskSpec")["placement"] for k, r in services.items()}
    assert placement["postgres"]["constraints"] == ["node.labels.fly-potato.role==data"]
    assert placement["nginx"]["constraints"] == ["node.labels.fly-potato.role==edge"]
    assert placement["nginx"]["maxReplicas"] == 1
    assert "constraints" not in placement["backend"] or not placement["backend"]["constraints"]
    assert all(p["platforms"] == [{"os": "linux", "architecture": "amd64"}] for p in placement.values())


def test_dev_on_swarm_publishes_nothing(graph: ProgramGraph) -> None:
    for key, service in _services(graph).items():
        assert service.prop("endpointSpec")["mode"] == "dnsrr"
        assert not (service.prop("endpointSpec") or {}).get("ports"), key


def test_the_operator_zone_is_internal_and_holds_postgres_keycloak_and_the_proxy_only(graph: ProgramGraph) -> None:
    operator = next(
        r
        for r in graph.of_type(NETWORK)
        if _labels(r.prop("labels"))[ZONE_LABEL] == "operator" and r.prop("driver") == "overlay"
    )
    assert operator.prop("internal") is True and operator.prop("attachable") is True
    members = sorted(
        key
        for key, service in _services(graph).items()
        if any(operator.urn in deps for deps in [service.property_dependencies.get("taskSpec", [])])
    )
    assert members == ["keycloak", "postgres"]


def test_the_operator_proxy_publishes_postgres_and_keycloak_on_the_managers_loopback_only(graph: ProgramGraph) -> None:
    settings = parse_settings(stack_config("dev", swarm_overrides()), stack="dev")
    (proxy,) = [r for r in graph.of_type(CONTAINER) if r.name == "operator-proxy"]
    ports = sorted((p["ip"], p["external"], p["internal"]) for p in proxy.prop("ports"))
    assert ports == [("127.0.0.1", 5433, 5433), ("127.0.0.1", 8080, 8080)]
    address = proxy_address(settings.zone_subnets[Zone.OPERATOR])
    assert ipaddress.ip_address(address) in ipaddress.ip_network(settings.zone_subnets[Zone.OPERATOR])
    operator_leg = [n for n in proxy.prop("networksAdvanced") if n.get("ipv4Address")]
    assert [n["ipv4Address"] for n in operator_leg] == [address]
    assert proxy.prop("securityOpts") == ["no-new-privileges:true"] and proxy.prop("readOnly") is True
    publish = graph.by_name("operator-proxy-publish")
    assert publish.prop("driver") == "bridge" and publish.prop("internal") is False
    assert publish.prop("options") == {"com.docker.network.bridge.enable_ip_masquerade": "false"}


def test_pg_hba_admits_the_providers_from_the_proxy_address_only(graph: ProgramGraph) -> None:
    settings = parse_settings(stack_config("dev", swarm_overrides()), stack="dev")
    hba = next(base64.b64decode(r.prop("data")).decode() for r in graph.of_type(CONFIG) if "pg-hba" in r.prop("name"))
    address = proxy_address(settings.zone_subnets[Zone.OPERATOR])
    assert f"host    all           all         {address}/32" in hba
    assert settings.zone_gateway(Zone.OPERATOR) + "/32" not in hba


def test_secrets_are_swarm_secrets_and_never_configs(graph: ProgramGraph) -> None:
    secrets = {r.prop("name") for r in graph.of_type(SECRET)}
    configs = {r.prop("name") for r in graph.of_type(CONFIG)}
    fragments = (
        "postgres-password",
        "keycloak-conf",
        "database-url",
        "oauth2-client-s",
        "oauth2-cookie-s",
        "server-key",
    )
    for fragment in (*fragments, "metrics-gate-to"):
        assert any(fragment in name for name in secrets), (fragment, secrets)
        assert not any(fragment in name for name in configs), (fragment, configs)


def test_the_migration_runs_once_on_the_manager_behind_its_gate(graph: ProgramGraph) -> None:
    (migration,) = [r for r in graph.of_type(CONTAINER) if r.name == "migration"]
    assert migration.prop("command") == ["alembic", "upgrade", "head"]
    assert migration.prop("mustRun") is False and migration.prop("restart") == "no"
    gate = graph.by_name("release-migration-gate")
    (backend,) = [
        r for r in graph.resources if r.name == "app-backend" and r.type == "fly-potato:swarm:HardenedService"
    ]
    assert gate.urn in backend.dependencies
    assert migration.urn in gate.dependencies


def test_the_sql_exporter_starts_after_the_migration_gate() -> None:
    """Its queries call the functions migration 0004 makes: its first run must find them (prod on the swarm;
    dev on the swarm has no monitoring)."""
    graph = evaluate_program("prod", prod_on_swarm_overrides())
    assert graph.error is None, graph.error
    gate = graph.by_name("release-migration-gate")
    exporters = {
        r.name: r for r in graph.resources if r.type == "fly-potato:swarm:HardenedService" and "exporter" in r.name
    }
    assert gate.urn in exporters["monitoring-sql-exporter"].dependencies
    assert gate.urn not in exporters["monitoring-postgres-exporter"].dependencies


def test_keycloak_runs_the_images_optimized_build(graph: ProgramGraph) -> None:
    spec = _services(graph)["keycloak"].prop("taskSpec")["containerSpec"]
    assert spec["args"][:3] == ["keycloak-entrypoint", "start", "--optimized"]


def test_the_pack_finds_nothing_mandatory_deployed_or_previewed() -> None:
    for preview in (False, True):
        result = evaluate_program("dev", swarm_overrides(), preview=preview)
        assert result.error is None
        violations = crossguard.run(result, context.make(result.stack, result.config, today=TODAY)).violations
        assert [v for v in violations if v.level == "mandatory"] == [], (preview, violations)
        assert not [v for v in violations if "not known at preview" in v.message], violations


@pytest.mark.parametrize(("given", "shown"), [("1m0s", "1m"), ("90s", "1m30s"), ("3600s", "1h"), ("10s", "10s")])
def test_durations_are_written_as_the_provider_reads_a_service_back(given: str, shown: str) -> None:
    check = specs.probe(Healthcheck(["CMD", "true"], interval=given, timeout=given, start_period=given))
    assert (check.interval, check.timeout, check.start_period) == (shown, shown, shown)


def test_the_probes_and_the_service_write_durations_with_one_function() -> None:
    """One conversion to the provider's read-back format (components/swarm/service.py), used by the probes too."""
    assert specs.provider_duration is swarm_service.provider_duration
    assert not hasattr(specs, "swarm_duration")


def test_the_proxy_resolves_the_services_on_every_connection() -> None:
    conf = render_conf(())
    assert "resolver 127.0.0.11" in conf and "stream {" in conf and "http {" not in conf


def prod_on_swarm_overrides() -> dict[str, Any]:
    """The committed prod profile on the swarm, its images in the registry by digest."""
    images = {
        f"images.{name}": f"{REGISTRY}/fly-potato/{name.replace('_', '-')}@sha256:{'cd' * 32}"
        for name in stack_config("prod")["images"]
    }
    images["images.migration"] = images["images.backend"]
    return {"target": "swarm", "swarm.docker_host": MANAGER, "swarm.registry": REGISTRY, **images}


def test_prod_on_swarm_is_the_whole_platform_and_the_pack_finds_nothing_mandatory() -> None:
    """The committed prod profile on swarm: every group (monitoring and backups too), nginx on 443 and 80 in host
    mode on the edge nodes, and the prod pack with nothing mandatory, deployed or previewed."""
    overrides = prod_on_swarm_overrides()
    for preview in (False, True):
        result = evaluate_program("prod", overrides, preview=preview)
        assert result.error is None, result.error
        services = _services(result)
        assert {"postgres", "keycloak", "oauth2_proxy", "backend", "nginx", "backup", "prometheus"} <= set(services)
        ports = services["nginx"].prop("endpointSpec")["ports"]
        assert sorted((p["publishedPort"], p["publishMode"]) for p in ports) == [(80, "host"), (443, "host")]
        violations = crossguard.run(result, context.make(result.stack, result.config, today=TODAY)).violations
        assert [v for v in violations if v.level == "mandatory"] == [], (preview, violations)


def test_the_outputs_carry_the_port_matrix_as_published_on_the_swarm(graph: ProgramGraph) -> None:
    """The host's outputs and ``swarm_services``; the port matrix has a row per listener of a service that runs,
    and its published rows are exactly what the graph publishes: nginx in host mode on the edge nodes (every
    address of a node), Postgres and Keycloak on the manager's loopback through the operator proxy."""
    host = evaluate_program("dev")
    for result in (graph, evaluate_program("prod", prod_on_swarm_overrides())):
        assert result.error is None, result.error
        assert set(result.outputs) == set(host.outputs) | {"swarm_services"}
        matrix = result.outputs["port_matrix"]
        assert {row["service"] for row in matrix} == set(_services(result))  # no container_exporter on a swarm
        for row in matrix:
            assert set(row) == {*host.outputs["port_matrix"][0], "published_on"}, row
        from_output = {
            (row["published_on"], row["host_ip"], row["host_port"], row["container_port"])
            for row in matrix
            if row["host_port"] is not None
        }
        nginx = _services(result)["nginx"].prop("endpointSpec") or {}
        edge = {
            ("edge_nodes", "0.0.0.0", int(p["publishedPort"]), int(p["targetPort"]))
            for p in nginx.get("ports") or []
            if p["publishMode"] == "host"
        }
        (proxy,) = [r.prop("ports") for r in result.of_type(CONTAINER) if r.name == "operator-proxy"]
        manager = {("manager", p["ip"], int(p["external"]), int(p["internal"])) for p in proxy}
        assert from_output == edge | manager
    prod_rows = {(row["listener"], row["published_on"]) for row in matrix if row["published_on"]}
    assert prod_rows == {
        ("nginx_http", "edge_nodes"),
        ("nginx_https", "edge_nodes"),
        ("postgres", "manager"),
        ("keycloak", "manager"),
    }


def probes(
    asked: list[str], *, resolve: set[str] | None = None, nofile: int | None = 1024, cpus: int = 1
) -> preflight.HostProbes:
    """A deploying machine whose DNS answers ``resolve`` (nothing by default) and whose Docker daemon grants
    ``nofile`` open files and ``cpus`` CPUs (by default less than prod asks for); every question lands in ``asked``."""

    def ask(what: str, answer: Any) -> Any:
        asked.append(what)
        return answer

    return preflight.HostProbes(
        resolve=lambda name: ask(f"dns {name}", resolve or set()),
        nofile_hard_limit=lambda: ask("nofile", nofile),
        cpus=lambda: ask("cpus", cpus),
    )


def test_a_swarm_stack_runs_the_hosts_preflight_before_its_first_resource() -> None:
    """R-OPS-1 on swarm: an unresolvable domain stops the deploy with the host's sentence, before any resource;
    switched off as on a host. A bad provided TLS key stops it the same way."""
    on_host = evaluate_program("prod", host=probes([], nofile=None, cpus=64))  # a host prod fits
    assert on_host.error and "fly-potato:domain = flypotato.example.com does not resolve" in on_host.error
    asked: list[str] = []
    on_swarm = evaluate_program("prod", prod_on_swarm_overrides(), host=probes(asked))
    assert on_swarm.error == on_host.error
    assert on_swarm.resources == [], "nothing declared before the preflight"
    assert asked == ["dns flypotato.example.com"]

    off = evaluate_program("prod", {**prod_on_swarm_overrides(), "features.dns_preflight": False}, host=probes([]))
    assert off.error is None, off.error
    assert off.resources

    bad_key = {**prod_on_swarm_overrides(), **PROVIDED, "tls.private_key_pem": "oops-not-a-key"}
    stopped = evaluate_program("prod", bad_key, host=probes([], resolve={"192.0.2.1"}))
    assert stopped.error and "fly-potato:tls.private_key_pem is not a PEM private key" in stopped.error
    assert stopped.resources == []


def test_a_swarm_stacks_preflight_does_not_ask_this_machines_docker_daemon() -> None:
    """The tasks run on the swarm's nodes, behind the manager's API: this machine's open-files limit and CPUs say
    nothing about them. DockerHost.of reads host.ssh and docker:host only, so it calls a swarm stack local (even
    with an ssh:// manager); the preflight decides by the target instead."""
    for manager in (MANAGER, "ssh://deploy@manager.example.com"):
        config = stack_config("prod", {**prod_on_swarm_overrides(), "swarm.docker_host": manager})
        settings = parse_settings(config, stack="prod")
        assert not DockerHost.of(settings, docker_host="").is_remote
        assert not preflight.local_docker_daemon(settings)
    assert preflight.local_docker_daemon(parse_settings(stack_config("prod"), stack="prod"))

    asked: list[str] = []
    result = evaluate_program("prod", prod_on_swarm_overrides(), host=probes(asked, resolve={"192.0.2.1"}))
    assert result.error is None, result.error
    assert asked == ["dns flypotato.example.com"]
    host_asked: list[str] = []
    on_host = evaluate_program("prod", host=probes(host_asked, resolve={"192.0.2.1"}))
    assert on_host.error and "host.max_open_files" in on_host.error, "the same probes stop a host stack"
    assert host_asked == ["nofile"]
