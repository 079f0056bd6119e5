"""Files reach hardened containers through a never-started files container and a read-only volume.

Docker copies a container's uploads to ``/`` and refuses that on a read-only root filesystem (the Docker
provider always uploads to ``/``), so the service container itself carries no uploads.
"""

from __future__ import annotations

from components.container import CONFIG_DIR
from policy.program import ProgramGraph


def test_service_containers_carry_no_uploads_and_mount_their_files_read_only(graph: ProgramGraph) -> None:
    loaders = graph.files_containers()
    assert loaders, "services with configuration have a files container"
    for service in loaders:
        recorded = graph.by_urn(graph.containers()[service].urn)
        assert not recorded.inputs.get("uploads"), f"{service}: uploads on a read-only container fail"
        config = [m for m in recorded.prop("mounts") if m["target"] == CONFIG_DIR]
        assert config and config[0]["readOnly"] is True, f"{service}: configuration is mounted read-only"


def test_files_containers_never_run(graph: ProgramGraph) -> None:
    for service, loader in graph.files_containers().items():
        assert loader.prop("start") is False, service
        assert loader.prop("mustRun") is False, service
        assert loader.prop("networkMode") == "none", service
        assert not loader.prop("ports"), service
        assert loader.prop("user").split(":")[0] not in ("0", "root"), service
        (mount,) = loader.prop("mounts")
        assert mount["target"] == CONFIG_DIR and mount["readOnly"] is False


def test_a_service_waits_for_its_files_and_is_replaced_when_they_change(graph: ProgramGraph) -> None:
    for service, loader in graph.files_containers().items():
        recorded = graph.by_urn(graph.containers()[service].urn)
        assert loader.urn in recorded.dependencies, f"{service} starts after its files are written"
        assert recorded.options["replacement_trigger"], f"{service} restarts on new file contents"


def test_the_service_view_shows_the_files_it_receives(prod_graph: ProgramGraph) -> None:
    files = {u["file"] for u in prod_graph.containers()["nginx"].prop("uploads")}
    assert f"{CONFIG_DIR}/nginx.conf" in files
