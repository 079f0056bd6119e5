"""The published ports of each committed stack equal the "Services and ports" table of docs/requirements.md
(R-NET-1, R-NET-2, R-NET-3), checked on the Docker containers the program declares."""

from __future__ import annotations

from policy_plan.program import ProgramGraph

# service -> {(host_ip, host_port, container_port)} as in docs/requirements.md.
DEV_TABLE = {
    "postgres": {("127.0.0.1", 5433, 5433)},
    "backend": {("127.0.0.1", 8073, 8000)},
    "nginx": {("127.0.0.1", 80, 80)},
    "keycloak": {("127.0.0.1", 8080, 8080)},
    "oauth2_proxy": {("127.0.0.1", 4180, 4180)},
    "prometheus": {("127.0.0.1", 9090, 9090)},
    "alertmanager": {("127.0.0.1", 9093, 9093)},
    "node_exporter": {("127.0.0.1", 9100, 9100)},
    "postgres_exporter": {("127.0.0.1", 9187, 9187)},
    "sql_exporter": {("127.0.0.1", 9399, 9399)},
}
# PROD: only nginx on a routable address; operator binds on loopback; everything else internal.
PROD_TABLE = {
    "nginx": {("0.0.0.0", 443, 443), ("0.0.0.0", 80, 80)},
    "postgres": {("127.0.0.1", 5433, 5433)},
    "keycloak": {("127.0.0.1", 8080, 8080)},
}
# Internal ports of PROD (container side), from the same table.
PROD_INTERNAL = {
    "backend": 80,
    "oauth2_proxy": 4180,
    "keycloak": 8080,
    "postgres": 5433,
    "prometheus": 9090,
    "alertmanager": 9093,
    "node_exporter": 9100,
    "postgres_exporter": 9187,
    "sql_exporter": 9399,
}


def published(graph: ProgramGraph) -> dict[str, set[tuple[str, int, int]]]:
    result: dict[str, set[tuple[str, int, int]]] = {}
    for service, container in graph.containers().items():
        rows = {(p["ip"], int(p["external"]), int(p["internal"])) for p in container.prop("ports") or []}
        if rows:
            result[service] = rows
    return result


def test_dev_publishes_exactly_the_design_table_on_loopback(dev_graph: ProgramGraph) -> None:
    assert published(dev_graph) == DEV_TABLE


def test_prod_publishes_only_nginx_publicly_and_operator_binds_on_loopback(prod_graph: ProgramGraph) -> None:
    assert published(prod_graph) == PROD_TABLE


def test_prod_internal_ports_match_the_design_table(prod_graph: ProgramGraph) -> None:
    matrix = {(row["service"], row["container_port"]) for row in prod_graph.outputs["port_matrix"]}
    for service, port in PROD_INTERNAL.items():
        assert (service, port) in matrix, f"{service} should listen on {port} in prod"


def test_port_matrix_output_agrees_with_the_containers(graph: ProgramGraph) -> None:
    from_output = {
        (row["service"], row["host_ip"], row["host_port"], row["container_port"])
        for row in graph.outputs["port_matrix"]
        if row["host_port"] is not None
    }
    from_containers = {(s, ip, hp, cp) for s, rows in published(graph).items() for ip, hp, cp in rows}
    assert from_output == from_containers
    for row in graph.outputs["port_matrix"]:
        assert set(row) == {"service", "listener", "zone", "host_ip", "host_port", "container_port", "protocol"}


def test_every_host_binding_names_its_host_ip(graph: ProgramGraph) -> None:
    for service, container in graph.containers().items():
        for port in container.prop("ports") or []:
            assert port.get("ip"), f"{service} publishes {port} without an explicit host IP"


def test_prod_without_the_redirect_publishes_443_only() -> None:
    from policy_plan.program import evaluate_program

    graph = evaluate_program("prod", {"features.http_redirect": False})
    assert graph.error is None
    assert published(graph)["nginx"] == {("0.0.0.0", 443, 443)}
