"""NetworkZones alone, from hand-made args under the mocks (R-NET-4, R-OPS-3)."""

from __future__ import annotations

from typing import Any

from components.catalog import Zone
from components.network_zones import NetworkZones, ZonesArgs
from tests.support.components import component_graph

NETWORK = "docker:index/network:Network"


def test_network_zones_alone() -> None:
    args = ZonesArgs(
        project="fly-potato",
        stack="t1",
        internal={zone: zone is Zone.DATA for zone in Zone},
        subnets={zone: f"10.99.{index}.0/24" for index, zone in enumerate(Zone)},
        gateways={zone: f"10.99.{index}.1" for index, zone in enumerate(Zone)},
    )

    def build(*_: Any) -> None:
        NetworkZones("lone", args)

    graph = component_graph("dev", build)  # beside the helper's own zones, from the dev settings
    networks = {r.name: r for r in graph.of_type(NETWORK) if r.name.startswith("lone-")}
    assert set(networks) == {f"lone-{zone.value}" for zone in Zone}
    for index, zone in enumerate(Zone):
        network = networks[f"lone-{zone.value}"]
        assert network.prop("name") == f"fly-potato-t1-{zone.value}"
        assert bool(network.prop("internal")) == (zone is Zone.DATA)
        assert network.prop("ipamConfigs") == [{"subnet": f"10.99.{index}.0/24", "gateway": f"10.99.{index}.1"}]
        masquerade = (network.prop("options") or {}).get("com.docker.network.bridge.enable_ip_masquerade")
        assert (masquerade == "false") == (zone is Zone.OPERATOR)
