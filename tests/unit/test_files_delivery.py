"""Files reach hardened containers through a files container and a read-only volume.

Docker copies a container's uploads to ``/`` and refuses that on a read-only root filesystem (the Docker
provider always uploads to ``/``), so the service container itself carries no uploads.
"""

from __future__ import annotations

from components.hardened_container import CONFIG_DIR, handover
from policy_plan.program import ProgramGraph


def test_service_containers_carry_no_uploads_and_mount_their_files_read_only(graph: ProgramGraph) -> None:
    loaders = graph.files_containers()
    assert loaders, "services with configuration have a files container"
    for service in loaders:
        recorded = graph.by_urn(graph.containers()[service].urn)
        assert not recorded.inputs.get("uploads"), f"{service}: uploads on a read-only container fail"
        config = [m for m in recorded.prop("mounts") if m["target"] == CONFIG_DIR]
        assert config and config[0]["readOnly"] is True, f"{service}: configuration is mounted read-only"


def test_files_containers_only_hand_the_files_to_the_service_uid(graph: ProgramGraph) -> None:
    """Docker writes uploads as root; the files container runs once to give them to the service's uid:gid,
    so a secret file (0440) is readable by its service and by no other uid (R-SEC-1)."""
    for service, loader in graph.files_containers().items():
        uid, _, gid = graph.containers()[service].prop("user").partition(":")
        assert loader.prop("attach") is True, f"{service} starts after the hand-over finished"
        assert loader.prop("mustRun") is False and loader.prop("restart") == "no", service
        assert loader.prop("networkMode") == "none", service
        assert not loader.prop("ports"), service
        assert loader.prop("capabilities") == {"drops": ["ALL"], "adds": ["CHOWN"]}, service
        assert "no-new-privileges:true" in loader.prop("securityOpts"), service
        assert loader.prop("entrypoints") == handover(uid, gid), service
        assert f"-type f -exec chown {uid}:{gid} " in loader.prop("entrypoints")[-1], service
        (mount,) = loader.prop("mounts")
        assert mount["target"] == CONFIG_DIR and mount["readOnly"] is False


def test_uploads_carry_no_owner_the_provider_does_not_know(graph: ProgramGraph) -> None:
    """pulumi-docker 5.1.0 has no owner/group on uploads; the engine refuses unknown keys."""
    for service, loader in graph.files_containers().items():
        for upload in loader.prop("uploads"):
            assert set(upload) <= {"file", "content", "permissions", "executable"}, (service, set(upload))


def test_a_service_waits_for_its_files_and_is_replaced_when_they_change(graph: ProgramGraph) -> None:
    for service, loader in graph.files_containers().items():
        recorded = graph.by_urn(graph.containers()[service].urn)
        assert loader.urn in recorded.dependencies, f"{service} starts after its files are written"
        assert recorded.options["replacement_trigger"], f"{service} restarts on new file contents"


def test_the_service_view_shows_the_files_it_receives(prod_graph: ProgramGraph) -> None:
    files = {u["file"] for u in prod_graph.containers()["nginx"].prop("uploads")}
    assert f"{CONFIG_DIR}/nginx.conf" in files
