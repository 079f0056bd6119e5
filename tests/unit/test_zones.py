"""Zone membership (R-NET-4, R-NET-5) and stack isolation of Docker names (R-OPS-3)."""

from __future__ import annotations

from policy_plan.program import ProgramGraph, evaluate_program


def memberships(graph: ProgramGraph) -> dict[str, set[str]]:
    prefix = f"fly-potato-{graph.stack}-"
    return {
        service: {n["name"].removeprefix(prefix) for n in container.prop("networksAdvanced") or []}
        for service, container in graph.containers().items()
    }


def test_nginx_is_the_only_member_of_edge(graph: ProgramGraph) -> None:
    assert {s for s, zones in memberships(graph).items() if "edge" in zones} == {"nginx"}


def test_postgres_is_never_in_edge_or_app(graph: ProgramGraph) -> None:
    assert memberships(graph)["postgres"] & {"edge", "app"} == set()


def test_each_container_joins_only_its_zones(dev_graph: ProgramGraph, prod_graph: ProgramGraph) -> None:
    assert memberships(dev_graph) == {
        "postgres": {"data"},
        "migration": {"data"},
        "backup": {"data", "monitoring"},
        "backend": {"app", "data", "monitoring"},
        "keycloak": {"app", "data", "monitoring"},
        "oauth2_proxy": {"app", "monitoring"},
        "nginx": {"edge", "app", "monitoring"},
        "prometheus": {"monitoring"},
        "alertmanager": {"monitoring"},
        "node_exporter": {"monitoring"},
        "postgres_exporter": {"monitoring", "data"},
        "sql_exporter": {"monitoring", "data"},
        "blackbox_exporter": {"monitoring", "app"},
        "container_exporter": {"monitoring"},
    }
    prod = memberships(prod_graph)
    # Operator binds need a non-internal bridge; only the loopback-published services join it.
    assert {s for s, z in prod.items() if "operator" in z} == {"postgres", "keycloak"}
    # Only the services on the egress allow-list of Pulumi.prod.yaml reach out.
    assert {s for s, z in prod.items() if "egress" in z} == {"alertmanager", "backup"}


def test_prod_inner_zones_are_internal_and_dev_relaxes_them(dev_graph: ProgramGraph, prod_graph: ProgramGraph) -> None:
    def internal(graph: ProgramGraph) -> dict[str, bool]:
        return {
            n.prop("name").rsplit("-", 1)[-1]: bool(n.prop("internal"))
            for n in graph.of_type("docker:index/network:Network")
        }

    assert internal(prod_graph) == {
        "edge": False,
        "app": True,
        "data": True,
        "monitoring": True,
        "egress": False,
        "operator": False,
    }
    assert not any(internal(dev_graph).values())


def test_operator_zone_does_not_masquerade(prod_graph: ProgramGraph) -> None:
    operator = next(
        n for n in prod_graph.of_type("docker:index/network:Network") if n.prop("name").endswith("operator")
    )
    assert operator.prop("options") == {"com.docker.network.bridge.enable_ip_masquerade": "false"}


def test_egress_follows_the_allow_list() -> None:
    graph = evaluate_program("dev", {"egress": [{"service": "keycloak", "purpose": "idp", "port": 443}]})
    assert graph.error is None
    assert {s for s, z in memberships(graph).items() if "egress" in z} == {"keycloak"}


def test_every_docker_name_carries_project_and_stack(graph: ProgramGraph) -> None:
    named = [
        r
        for r in graph.resources
        if r.type in ("docker:index/container:Container", "docker:index/network:Network", "docker:index/volume:Volume")
    ]
    assert named
    for resource in named:
        assert resource.prop("name").startswith(f"fly-potato-{graph.stack}-"), resource.prop("name")


def test_dev_and_prod_share_no_docker_name(dev_graph: ProgramGraph, prod_graph: ProgramGraph) -> None:
    def names(graph: ProgramGraph) -> set[str]:
        return {r.prop("name") for r in graph.resources if r.type.startswith("docker:") and r.prop("name")}

    assert names(dev_graph) & names(prod_graph) == set()
