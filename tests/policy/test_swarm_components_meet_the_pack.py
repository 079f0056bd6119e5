"""The swarm components (components.swarm) as the program would build them for prod, judged by the pack.

The pack's swarm rules are tested on hand-made services in test_swarm_policies.py; this holds the two together:
what ``HardenedService`` and ``SwarmZones`` produce under the mocks passes every rule the pack applies to
services (R-NET-1/2/4/5, R-SEC-1/2/3), and nginx built to publish one more port is refused by R-NET-1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pulumi
import pulumi_docker as docker

from components.catalog import Resources
from components.settings import parse_settings
from components.swarm import HardenedService, HardenedServiceArgs, HostPort, Probe, SwarmZones
from components.swarm.placement import placement_of, zones_args_of
from policy import context
from policy_plan import crossguard
from policy_plan.program import ProgramGraph, evaluate_program, stack_config
from tests.policy.support import TODAY

STACK = "prod"
REGISTRY = "registry.flypotato.example.com"  # where the committed prod images are pinned
SWARM_RULES = {
    "public-bindings-nginx-only",
    "other-bindings-loopback",
    "zone-membership",
    "egress-allow-list",
    "no-plaintext-secret-env",
    "container-hardening",
    "image-digest-pinned",
}
Build = Callable[[pulumi.ResourceOptions, SwarmZones], None]


def _config() -> dict[str, object]:
    config = stack_config(STACK)
    config.update(
        {"target": "swarm", "swarm": {"docker_host": "unix:///run/fly-potato-swarm/node1.sock", "registry": REGISTRY}}
    )
    return config


def _service(
    settings_service: str, *, ports: tuple[HostPort, ...] = (), command: list[str] | None = None
) -> Callable[[pulumi.ResourceOptions, SwarmZones], HardenedService]:
    def build(opts: pulumi.ResourceOptions, zones: SwarmZones) -> HardenedService:
        settings = parse_settings(_config(), stack=STACK)
        placement = placement_of(settings.raw.swarm, settings_service)
        return HardenedService(
            settings_service,
            HardenedServiceArgs(
                project=settings.project,
                stack=settings.stack,
                service=settings_service,
                image=settings.images[settings_service],
                healthcheck=Probe(["CMD", "http-probe", "8080", "/healthz"]),
                resources=Resources(cpus=0.5, memory_mb=256, pids=128),
                replicas=placement.replicas,
                constraints=placement.constraints,
                max_replicas_per_node=placement.max_replicas_per_node,
                ports=ports,
                command=command,
            ),
            zones,
            opts,
        )

    return build


def _graph(*builds: Callable[[pulumi.ResourceOptions, SwarmZones], HardenedService]) -> ProgramGraph:
    asyncio.set_event_loop(asyncio.new_event_loop())  # the mocked engine needs a current loop
    config = _config()

    def program() -> None:
        settings = parse_settings(config, stack=STACK)
        opts = pulumi.ResourceOptions(provider=docker.Provider("swarm-manager", host=settings.raw.swarm.docker_host))
        zones = SwarmZones("swarm-zones", zones_args_of(settings), opts)
        for build in builds:
            build(opts, zones)

    graph = evaluate_program(STACK, config=config, program=program)
    assert graph.error is None, graph.error
    return graph


def _violations(graph: ProgramGraph) -> set[tuple[str, str, str]]:
    result = crossguard.run(graph, context.make(graph.stack, graph.config, today=TODAY))
    return {(v.policy, v.resource, v.level) for v in result.violations if v.policy in SWARM_RULES}


NGINX_PORTS = (HostPort(8443, 443), HostPort(8080, 80))


def test_the_swarm_components_for_prod_pass_every_rule_the_pack_applies_to_services() -> None:
    graph = _graph(_service("nginx", ports=NGINX_PORTS), _service("backend"), _service("postgres"))
    services = {resource.name for resource in graph.of_type("docker:index/service:Service")}
    assert services == {"nginx", "backend", "postgres"}
    assert _violations(graph) == set()


def test_nginx_built_to_publish_one_more_port_is_refused_by_r_net_1() -> None:
    # Only nginx can publish at all (the component refuses a host port on a service in internal zones only), and
    # the pack allows it 443 and 80 in host mode: Postgres' port on the edge nodes is refused.
    graph = _graph(_service("nginx", ports=(*NGINX_PORTS, HostPort(5432, 5432))), _service("postgres"))
    assert _violations(graph) == {
        ("public-bindings-nginx-only", "nginx", "mandatory"),
        (
            "other-bindings-loopback",
            "nginx",
            "mandatory",
        ),  # R-NET-2: prod publishes nothing else, not even for operators
    }
