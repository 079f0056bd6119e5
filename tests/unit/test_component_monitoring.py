"""MonitoringServices alone, from hand-made args under the mocks: Prometheus, Alertmanager and the exporters
with the configuration they are given (R-OBS-1, R-SEC-1, R-SEC-5, R-TLS-4)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from components.catalog import SERVICES, Group
from components.hardened_container import SECRETS_DIR
from components.monitoring_config import PATHS
from components.monitoring_services import MonitoringArgs, MonitoringServices
from policy_plan.program import ProgramGraph
from tests.support.components import children, component, component_graph
from tests.unit.test_backup_wiring import env, uploads
from tests.unit.test_component_data import secret_files, service

MONITORING = [name for name, s in SERVICES.items() if s.group is Group.MONITORING]
TOKEN = "MetricsToken0123456789abcdefABCDEF42"


def monitoring_args(placement: Any, zones: Any, *, gid: int | None, internal_ca: bool) -> MonitoringArgs:
    return MonitoringArgs(
        placement=placement,
        zones=zones,
        images={name: f"{name}:test" for name in MONITORING},
        ports={**{name: 9100 + index for index, name in enumerate(MONITORING)}, "postgres": 5433},
        prometheus_argv=["prometheus", "--config.file=hand-made"],
        prometheus_config="global: {}  # hand-made\n",
        rules="groups: []\n",
        alertmanager_argv=["alertmanager", f"--config.file={PATHS.alertmanager_secret_config}"],
        alertmanager_config_file=PATHS.alertmanager_secret_config,
        alertmanager_config="route: {receiver: mail}\n",
        alertmanager_config_is_secret=True,
        smtp_password=SecretStr("smtp-secret"),
        warn_no_receiver=False,
        blackbox_config="modules: {}\n",
        internal_ca_pem="CA PEM" if internal_ca else None,
        sql_exporter_config="target: {data_source_name: postgres://exporter:pw@postgres}\n",
        exporter_password="exporter-secret",
        metrics_token=TOKEN,
        docker_socket="/run/docker.sock",
        docker_socket_gid=gid,
        retain_volumes=True,
    )


def graph_of(*, gid: int | None, internal_ca: bool) -> ProgramGraph:
    def build(_settings: Any, placement: Any, zones: Any) -> None:
        MonitoringServices("mon", monitoring_args(placement, zones, gid=gid, internal_ca=internal_ca))

    return component_graph("dev", build)


@pytest.fixture(scope="module")
def graph() -> ProgramGraph:
    return graph_of(gid=4242, internal_ca=True)


def test_every_monitoring_service_with_its_image(graph: ProgramGraph) -> None:
    monitoring = component(graph, "fly-potato:monitoring:MonitoringServices")
    names = {r.name for r in children(graph, monitoring)}
    services = {f"mon-{name.replace('_', '-')}" for name in MONITORING}
    assert names == services | {"mon-prometheus-data", "mon-alertmanager-data"}
    for name in MONITORING:
        assert service(graph, f"mon-{name.replace('_', '-')}").prop("image") == f"{name}:test"
    volumes = [r for r in graph.of_type("docker:index/volume:Volume") if r.parent == monitoring.urn]
    assert all(v.options["retain_on_delete"] for v in volumes)


def test_prometheus_and_alertmanager_run_the_rendered_config(graph: ProgramGraph) -> None:
    prometheus = service(graph, "mon-prometheus")
    assert prometheus.prop("command")[-2:] == ["prometheus", "--config.file=hand-made"]
    files = uploads(graph.files_containers()["prometheus"])
    assert files[PATHS.prometheus_config]["content"] == "global: {}  # hand-made\n"
    assert files[PATHS.rules]["content"] == "groups: []\n"
    assert PATHS.metrics_token in secret_files(graph, "prometheus")
    alertmanager = uploads(graph.files_containers()["alertmanager"])
    assert alertmanager[PATHS.alertmanager_secret_config]["permissions"] == "0400"
    assert alertmanager[PATHS.smtp_password]["content"] == "smtp-secret"
    assert {PATHS.alertmanager_secret_config, PATHS.smtp_password} <= secret_files(graph, "alertmanager")


def test_exporters_get_their_secrets_as_files(graph: ProgramGraph) -> None:
    postgres_exporter = service(graph, "mon-postgres-exporter")
    assert env(postgres_exporter)["DATA_SOURCE_URI"] == "postgres:5433/postgres?sslmode=disable"
    assert f"{SECRETS_DIR}/exporter_password" in secret_files(graph, "postgres_exporter")
    assert PATHS.sql_exporter_config in secret_files(graph, "sql_exporter")
    blackbox = uploads(graph.files_containers()["blackbox_exporter"])
    assert blackbox[PATHS.internal_ca]["content"] == "CA PEM"
    exporter = service(graph, "mon-container-exporter")
    assert exporter.prop("user") == f"{SERVICES['container_exporter'].uid}:4242"
    assert env(exporter)["EXPORTER_STACK"] == "dev"
    assert {m["source"] for m in exporter.prop("mounts") if m["type"] == "bind"} == {"/run/docker.sock"}


def test_without_the_socket_group_or_an_internal_ca() -> None:
    graph = graph_of(gid=None, internal_ca=False)
    assert not [r for r in graph.resources if r.name == "mon-container-exporter"]
    assert PATHS.internal_ca not in uploads(graph.files_containers()["blackbox_exporter"])
