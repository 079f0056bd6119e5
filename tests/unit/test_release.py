"""Release order (R-OPS-2) and host guardrails (R-NET-5, R-NET-6) in the recorded resource graph."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

from components.host_guardrails import DockerHost, chain_name, egress_allow_list
from components.release_order import migrations_digest, release_fingerprint, schema_fingerprint
from components.settings import parse_settings
from policy_plan.program import PlannedResource, ProgramGraph, evaluate_program, is_secret, stack_config
from tests.support.graph import depends_on

LOCAL = "command:local:Command"
REMOTE = "command:remote:Command"
NEW_BACKEND = "fly-potato/backend:0.2.0"


def step(graph: ProgramGraph, name: str) -> PlannedResource:
    return graph.by_name(name)


def waits_for(graph: ProgramGraph, resource: PlannedResource) -> set[str]:
    return graph.ancestors_and_dependencies(resource.urn)


def words(command: str) -> list[str]:
    return shlex.split(command)


def script_args(resource: PlannedResource, key: str = "create") -> list[str]:
    """The arguments after ``bash -c TEXT NAME`` of a rendered host script."""
    parts = words(resource.prop(key))
    return parts[parts.index("-c") + 3 :]


def evaluate(stack: str, **overrides: Any) -> ProgramGraph:
    graph = evaluate_program(stack, overrides)
    assert graph.error is None, graph.error
    return graph


# --- the order ----------------------------------------------------------------------------------------


def test_backup_then_migration_then_backend_then_smoke(graph: ProgramGraph) -> None:
    containers = graph.containers()
    backup = step(graph, "release-backup")
    migration = containers["migration"]
    gate = step(graph, "release-migration-gate")
    backend = containers["backend"]
    smoke = step(graph, "release-smoke")

    assert containers["backup"].urn in waits_for(graph, backup), "the dump runs in the running backup service"
    assert backup.urn in waits_for(graph, migration)
    assert {migration.urn, backup.urn} <= waits_for(graph, gate)
    assert {gate.urn, migration.urn, backup.urn} <= waits_for(graph, backend)
    assert {backend.urn, containers["nginx"].urn, gate.urn, backup.urn} <= waits_for(graph, smoke)
    # ...and never the other way round (no cycle: what each step itself depends on).
    assert not {migration.urn, gate.urn, backend.urn, smoke.urn} & depends_on(graph, backup)
    assert not {gate.urn, backend.urn, smoke.urn} & depends_on(graph, migration)
    assert smoke.urn not in depends_on(graph, backend)


def test_keycloak_starts_after_the_dump_and_the_dump_never_waits_for_keycloak(graph: ProgramGraph) -> None:
    """Keycloak creates (first start) or migrates (new version) its schema when it starts; the pre-deploy dump
    reads that database. So Keycloak's container, and the files it starts with, wait for the dump, and the dump
    waits for nothing of Keycloak's (no cycle, and no dump while Keycloak's schema changes)."""
    containers = graph.containers()
    backup = step(graph, "release-backup")
    keycloak = containers["keycloak"]
    assert backup.urn in depends_on(graph, keycloak), "Keycloak starts before the dump"
    files = graph.by_name("auth-keycloak-files")
    assert backup.urn in depends_on(graph, files)
    assert keycloak.urn not in depends_on(graph, backup) and files.urn not in depends_on(graph, backup)
    if graph.stack == "dev":  # start-dev's build volume: replaced delete-before-replace, stopping Keycloak first
        volume = graph.by_name("auth-keycloak-dev-build")
        assert backup.urn in depends_on(graph, volume) and volume.urn not in depends_on(graph, backup)
    # Nothing else of auth is held back by the dump but what needs Keycloak anyway.
    assert backup.urn in waits_for(graph, containers["oauth2_proxy"])  # it needs the realm, so Keycloak


def test_a_new_keycloak_image_takes_the_dump_again_and_nothing_else_of_the_release(dev_graph: ProgramGraph) -> None:
    """R-OPS-2: a Keycloak upgrade migrates Keycloak's schema; the dump is taken again before it. The backend's
    release steps do not run again for it."""
    changed = evaluate("dev", **{"images.keycloak": "fly-potato/keycloak:26.9.9"})
    assert step(changed, "release-backup").prop("triggers") != step(dev_graph, "release-backup").prop("triggers")
    for name in ("release-migration-gate", "release-smoke"):
        assert step(changed, name).prop("triggers") == step(dev_graph, name).prop("triggers"), name
    assert changed.containers()["keycloak"].prop("image") == "fly-potato/keycloak:26.9.9"
    assert "keycloak fly-potato/keycloak:26.9.9" in step(changed, "release-backup").prop("create")
    settings = parse_settings(stack_config("dev"), stack="dev")
    assert step(dev_graph, "release-backup").prop("triggers") == [schema_fingerprint(settings)]


def test_the_sql_exporter_starts_after_the_migration_gate_and_the_rest_of_monitoring_does_not(
    graph: ProgramGraph,
) -> None:
    """sql_exporter's queries call the functions the migrations make (schema metrics): its first run finds
    them. The other monitoring services do not wait for a release: they watch a failing one."""
    containers = graph.containers()
    gate = step(graph, "release-migration-gate")
    assert gate.urn in depends_on(graph, containers["sql_exporter"])
    for service in ("prometheus", "alertmanager", "postgres_exporter", "node_exporter"):
        assert gate.urn not in depends_on(graph, containers[service]), service


def test_the_gate_reads_the_migration_exit_code(graph: ProgramGraph) -> None:
    gate = step(graph, "release-migration-gate")
    migration = graph.containers()["migration"]
    # The Docker provider does not fail on a non-zero exit; the gate's command is built from exit_code.
    assert migration.urn in gate.property_dependencies["create"]
    assert migration.prop("mustRun") is False and migration.prop("attach") is True and migration.prop("logs") is True
    args = script_args(gate)
    assert args[:2] == ["--container", f"fly-potato-{graph.stack}-migration"]
    assert args[2] == "--exit-code"
    assert words(gate.prop("create"))[-5] == "migration-gate.sh"


def test_backup_runs_the_backup_tool_in_the_backup_container(graph: ProgramGraph) -> None:
    backup = step(graph, "release-backup")
    args = script_args(backup)
    assert args[:4] == ["--container", f"fly-potato-{graph.stack}-backup", "--timeout", "1800"]
    assert "python3 -m backup dump" in backup.prop("create")


def test_smoke_goes_through_nginx_to_health_ready(dev_graph: ProgramGraph, prod_graph: ProgramGraph) -> None:
    dev = script_args(step(dev_graph, "release-smoke"))
    assert dev[:4] == ["--url", "http://localhost/health/ready", "--resolve", "localhost:80:127.0.0.1"]
    assert "--cacert-stdin" not in dev and step(dev_graph, "release-smoke").prop("stdin") is None
    prod_smoke = step(prod_graph, "release-smoke")
    prod = script_args(prod_smoke)
    assert prod[:4] == [
        "--url",
        "https://flypotato.example.com/health/ready",
        "--resolve",
        "flypotato.example.com:443:127.0.0.1",
    ]
    assert prod[prod.index("--timeout") + 1] == "180" and "--cacert-stdin" in prod
    assert "BEGIN CERTIFICATE" in prod_smoke.prop("stdin"), "the stack CA's certificate is trusted, not -k"


def test_every_host_command_has_a_timeout(graph: ProgramGraph) -> None:
    commands = graph.of_type(LOCAL) + graph.of_type(REMOTE)
    assert commands
    for command in commands:
        for key in ("create", "delete"):
            if command.prop(key):
                assert words(command.prop(key))[:4] == [
                    "timeout",
                    "--kill-after=10",
                    words(command.prop(key))[2],
                    "bash",
                ]
                assert int(words(command.prop(key))[2]) > 0


# --- triggers -----------------------------------------------------------------------------------------


def test_a_new_backend_image_triggers_backup_migration_gate_and_smoke(dev_graph: ProgramGraph) -> None:
    changed = evaluate("dev", **{"images.backend": NEW_BACKEND, "images.migration": NEW_BACKEND})
    for name in ("release-backup", "release-migration-gate", "release-smoke"):
        assert step(changed, name).prop("triggers") != step(dev_graph, name).prop("triggers"), name
    # The migration container is replaced (new image), so it runs again.
    assert changed.containers()["migration"].prop("image") == NEW_BACKEND
    assert changed.containers()["migration"].prop("image") != dev_graph.containers()["migration"].prop("image")


def test_triggers_are_stable_when_nothing_changes(dev_graph: ProgramGraph) -> None:
    again = evaluate("dev")
    for name in ("release-backup", "release-migration-gate", "release-smoke"):
        assert step(again, name).prop("triggers") == step(dev_graph, name).prop("triggers"), name


def test_new_migration_scripts_change_the_fingerprint(tmp_path: Path) -> None:
    settings = parse_settings(stack_config("dev"), stack="dev")
    (tmp_path / "versions").mkdir()
    (tmp_path / "versions" / "0001_a.py").write_text("revision = '0001'\n")
    before = migrations_digest(tmp_path)
    (tmp_path / "versions" / "0002_b.py").write_text("revision = '0002'\ndown_revision = '0001'\n")
    after = migrations_digest(tmp_path)
    assert before != after
    assert release_fingerprint(settings, before) != release_fingerprint(settings, after)
    assert release_fingerprint(settings) == release_fingerprint(settings), "deterministic"


def test_migration_and_backend_must_use_the_same_image() -> None:
    graph = evaluate_program("dev", {"images.backend": NEW_BACKEND})
    assert graph.error is not None
    assert "fly-potato:images.migration" in graph.error and "same image" in graph.error


def test_without_the_backup_service_the_migration_is_still_gated() -> None:
    graph = evaluate("dev", **{"features.backups": False})
    assert not [r for r in graph.of_type(LOCAL) if r.name == "release-backup"]
    gate = step(graph, "release-migration-gate")
    assert gate.urn in waits_for(graph, graph.containers()["backend"])


# --- host guardrails ----------------------------------------------------------------------------------


def test_prod_enforces_the_egress_allow_list_in_docker_user(prod_graph: ProgramGraph) -> None:
    egress = step(prod_graph, "host-guardrails-egress")
    args = script_args(egress)
    chain = chain_name(parse_settings(stack_config("prod"), stack="prod"), "egress")
    assert args[:3] == ["apply", "--chain", chain]
    allows = [args[i + 1] for i, word in enumerate(args) if word == "--allow"]
    assert allows == ["tcp:443:0.0.0.0/0", "tcp:587:0.0.0.0/0"]  # object storage (backup), SMTP (alertmanager)
    # destroy removes exactly this chain and its jumps.
    assert script_args(egress, "delete") == ["remove", "--chain", chain]
    assert egress.options["delete_before_replace"] is True


def test_egress_source_is_the_egress_zone_subnet(prod_graph: ProgramGraph) -> None:
    settings = parse_settings(stack_config("prod"), stack="prod")
    from components.catalog import Zone

    args = script_args(step(prod_graph, "host-guardrails-egress"))
    assert args[args.index("--from") + 1] == settings.zone_subnets[Zone.EGRESS]
    exempt = [args[i + 1] for i, word in enumerate(args) if word == "--exempt"]
    import ipaddress

    for subnet in settings.zone_subnets.values():
        assert any(ipaddress.ip_network(subnet).subnet_of(ipaddress.ip_network(e)) for e in exempt)  # type: ignore[arg-type]


def test_every_container_waits_for_the_guardrails(prod_graph: ProgramGraph) -> None:
    egress = step(prod_graph, "host-guardrails-egress")
    for service, container in prod_graph.containers().items():
        assert egress.urn in waits_for(prod_graph, container), service


def test_dev_leaves_the_host_firewall_alone_unless_asked(dev_graph: ProgramGraph) -> None:
    assert not [r for r in dev_graph.of_type(LOCAL) if r.name.startswith("host-guardrails-")]
    asked = evaluate(
        "dev",
        **{"host.egress_rules": True, "egress": [{"service": "alertmanager", "purpose": "smtp", "port": 465}]},
    )
    args = script_args(step(asked, "host-guardrails-egress"))
    assert [args[i + 1] for i, w in enumerate(args) if w == "--allow"] == ["tcp:465:0.0.0.0/0"]


def test_egress_rules_follow_the_stack_config() -> None:
    config = stack_config(
        "prod",
        {
            "egress": [
                {"service": "backup", "purpose": "object_storage", "port": 443, "destinations": ["198.51.100.0/24"]},
                {"service": "keycloak", "purpose": "idp", "port": 443, "destinations": ["198.51.100.0/24"]},
                {"service": "keycloak", "purpose": "dns", "port": 53, "protocol": "udp"},
                {"service": "backup", "purpose": "ntp", "port": 123, "protocol": "udp"},
            ]
        },
    )
    settings = parse_settings(config, stack="prod")
    assert egress_allow_list(settings) == ["tcp:443:198.51.100.0/24", "udp:123:0.0.0.0/0", "udp:53:0.0.0.0/0"]


def test_datalens_sources_share_the_mechanism() -> None:
    graph = evaluate("prod", **{"datalens.allow_list": ["203.0.113.0/24"], "host_ports.datalens": 6432})
    datalens = step(graph, "host-guardrails-datalens")
    args = script_args(datalens)
    assert args[args.index("--to") + 1].endswith(":5433")
    assert [args[i + 1] for i, w in enumerate(args) if w == "--allow-source"] == ["203.0.113.0/24"]
    assert script_args(datalens, "delete")[0] == "remove"


def test_a_remote_docker_host_runs_the_commands_over_ssh() -> None:
    graph = evaluate(
        "prod",
        **{
            "host.ssh": {
                "host": "flypotato.example.com",
                "user": "deploy",
                "port": 2222,
                "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----",
                "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample",
            }
        },
    )
    assert not [r for r in graph.of_type(LOCAL)]
    remote = {r.name: r for r in graph.of_type(REMOTE)}
    assert {"host-guardrails-egress", "release-backup", "release-migration-gate", "release-smoke"} <= set(remote)
    egress = remote["host-guardrails-egress"]
    assert is_secret(egress.inputs["connection"]), "the connection carries the SSH key, so it stays a secret"
    connection = egress.prop("connection")
    assert connection["host"] == "flypotato.example.com" and connection["port"] == 2222
    assert connection["user"] == "deploy" and connection["hostKey"].startswith("ssh-ed25519 ")
    assert connection["privateKey"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")


def test_docker_host_over_ssh_is_reused_for_the_commands() -> None:
    settings = parse_settings(stack_config("prod"), stack="prod")
    host = DockerHost.of(settings, docker_host="ssh://ops@203.0.113.7:2200")
    assert host.ssh is not None and (host.ssh.host, host.ssh.user, host.ssh.port) == ("203.0.113.7", "ops", 2200)
    assert DockerHost.of(settings, docker_host="unix:///var/run/docker.sock").ssh is None
    with pytest.raises(ValueError, match="names no host"):
        DockerHost.of(settings, docker_host="ssh://")


def test_chain_names_fit_iptables_and_differ_per_stack() -> None:
    dev = parse_settings(stack_config("dev"), stack="dev")
    prod = parse_settings(stack_config("prod"), stack="prod")
    names = {chain_name(s, p) for s in (dev, prod) for p in ("egress", "datalens")}
    assert len(names) == 4 and all(len(n) <= 28 and n.startswith("FP-") for n in names)
