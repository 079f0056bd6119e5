"""R-NET-5 / R-NET-6 for real: the exact commands the stack's pulumi-command resources run, applied in a
host namespace of our own; a container namespace on the egress zone reaches an allowed port on a test host
and is refused a disallowed one; `destroy`'s command removes exactly the stack's rules."""

from __future__ import annotations

import pytest

from components.host_guardrails import host_script
from policy_plan.program import PlannedResource
from tests.host.netns import OUTSIDE, OUTSIDE_OTHER, Lab


@pytest.fixture(scope="module")
def servers(lab: Lab) -> Lab:
    lab.serve("outside", "tcp/587", "tcp/8080", "udp/123", "udp/5353")
    lab.serve("data", "tcp/8080")
    lab.serve("egress", "tcp/8443", "tcp/5433")
    return lab


def foreign_rule_present(lab: Lab) -> bool:
    return any("192.0.2.9/32" in line and "operator rule" in line for line in lab.rules())


def test_01_without_rules_everything_gets_through(servers: Lab) -> None:
    lab = servers
    assert lab.reach("egress", "tcp", OUTSIDE, 587) == "open"
    assert lab.reach("egress", "tcp", OUTSIDE, 8080) == "open"
    assert lab.reach("egress", "udp", OUTSIDE, 5353) == "open"


def test_02_apply_enforces_the_allow_list(servers: Lab, egress_command: PlannedResource) -> None:
    lab = servers
    before = lab.rules()
    result = lab.shell("host", egress_command.prop("create"))
    assert result.returncode == 0, result.stderr
    assert "applied FP-" in result.stdout and "jump inserted at position 1" in result.stdout
    assert lab.reach("egress", "tcp", OUTSIDE, 587) == "open", "SMTP submission is allowed"
    assert lab.reach("egress", "tcp", OUTSIDE, 8080) == "refused", "a port off the list is refused (tcp-reset)"
    assert lab.reach("egress", "udp", OUTSIDE, 123) == "open", "NTP is allowed"
    assert lab.reach("egress", "udp", OUTSIDE, 5353) != "open", "UDP off the list gets no answer"
    # The stack's own networks stay Docker's business; inbound connections and their replies still work.
    assert lab.reach("egress", "tcp", lab.address("data"), 8080) == "open"
    assert lab.reach("outside", "tcp", lab.address("egress"), 8443) == "open"
    # The first DOCKER-USER rule is the stack's jump; the operator's own rule is still there.
    docker_user = [line for line in lab.rules() if line.startswith("-A DOCKER-USER")]
    assert "-j FP-" in docker_user[0] and foreign_rule_present(lab)
    assert set(before) < set(lab.rules())


def test_03_apply_is_idempotent(servers: Lab, egress_command: PlannedResource) -> None:
    lab = servers
    first = lab.rules()
    result = lab.shell("host", egress_command.prop("create"))
    assert result.returncode == 0, result.stderr
    assert "jump already present" in result.stdout and "0 stale jump(s)" in result.stdout
    assert lab.rules() == first


def test_04_a_changed_allow_list_replaces_the_rules(servers: Lab, egress_command: PlannedResource) -> None:
    lab = servers
    create = egress_command.prop("create")
    changed = create.replace("tcp:587:198.51.100.0/24", "tcp:8080:198.51.100.0/24")
    assert changed != create
    assert lab.shell("host", changed).returncode == 0
    assert lab.reach("egress", "tcp", OUTSIDE, 8080) == "open"
    assert lab.reach("egress", "tcp", OUTSIDE, 587) == "refused"
    assert lab.shell("host", create).returncode == 0  # back to the stack's list
    assert lab.reach("egress", "tcp", OUTSIDE, 587) == "open"
    assert lab.reach("egress", "tcp", OUTSIDE, 8080) == "refused"


def test_05_datalens_sources_are_enforced_by_the_same_mechanism(
    servers: Lab, datalens_command: PlannedResource, guarded_settings: object
) -> None:
    lab = servers
    # The lab's "nginx" listens in the egress namespace; aim the rendered chain at its subnet.
    from components.catalog import Zone

    edge = guarded_settings.zone_subnets[Zone.EDGE]  # type: ignore[attr-defined]
    command = datalens_command.prop("create").replace(f"{edge}:5433", f"{lab.egress_subnet}:5433")
    assert lab.reach("outside", "tcp", lab.address("egress"), 5433, source=OUTSIDE_OTHER) == "open"
    result = lab.shell("host", command)
    assert result.returncode == 0, result.stderr
    assert lab.reach("outside", "tcp", lab.address("egress"), 5433, source=OUTSIDE) == "open", "allow-listed source"
    assert lab.reach("outside", "tcp", lab.address("egress"), 5433, source=OUTSIDE_OTHER) == "refused"
    assert lab.reach("outside", "tcp", lab.address("egress"), 8443, source=OUTSIDE_OTHER) == "open", (
        "other ports untouched"
    )
    removed = lab.shell("host", datalens_command.prop("delete"))
    assert removed.returncode == 0 and "deleted chain" in removed.stdout, removed.stderr
    assert lab.reach("outside", "tcp", lab.address("egress"), 5433, source=OUTSIDE_OTHER) == "open"


def test_06_destroy_removes_exactly_the_stack_rules(servers: Lab, egress_command: PlannedResource) -> None:
    lab = servers
    result = lab.shell("host", egress_command.prop("delete"))
    assert result.returncode == 0, result.stderr
    assert "deleted chain FP-" in result.stdout and "1 jump(s)" in result.stdout
    assert lab.rules() == [
        "-P INPUT ACCEPT",
        "-P FORWARD ACCEPT",
        "-P OUTPUT ACCEPT",
        "-N DOCKER-USER",
        "-A FORWARD -j DOCKER-USER",
        '-A DOCKER-USER -s 192.0.2.9/32 -m comment --comment "operator rule" -j RETURN',
    ]
    assert lab.reach("egress", "tcp", OUTSIDE, 8080) == "open"
    again = lab.shell("host", egress_command.prop("delete"))
    assert again.returncode == 0 and "nothing else to remove" in again.stdout


def test_07_missing_docker_user_is_explained(servers: Lab, egress_command: PlannedResource) -> None:
    lab = servers
    result = lab.shell("data", egress_command.prop("create"))  # a namespace where no dockerd set up DOCKER-USER
    assert result.returncode == 3
    assert "DOCKER-USER chain does not exist" in result.stderr and "iptables enabled" in result.stderr
    assert lab.exec("data", "iptables", "-S").stdout.splitlines() == [
        "-P INPUT ACCEPT",
        "-P FORWARD ACCEPT",
        "-P OUTPUT ACCEPT",
    ], "nothing half-applied"


def test_bad_arguments_are_refused_before_iptables_runs() -> None:
    import subprocess

    cases = {
        ("apply", "--chain", "DOCKER-USER", "--comment", "x", "--from", "10.0.0.0/24"): "must be FP-",
        ("apply", "--chain", "FP-x", "--comment", "x", "--from", "10.0.0.0/33"): "not an IPv4 address",
        ("apply", "--chain", "FP-x", "--comment", "x", "--from", "10.0.0.0/24", "--allow", "icmp:1"): "tcp or udp",
        ("apply", "--chain", "FP-x", "--comment", "x", "--from", "10.0.0.0/24", "--allow", "tcp:70000"): "not a port",
        ("apply", "--chain", "FP-x", "--comment", "x"): "exactly one of --from",
        ("flush", "--chain", "FP-x"): "apply, remove or show",
    }
    for args, message in cases.items():
        result = subprocess.run(
            ["bash", "-c", host_script("docker-user-chain.sh", *args, timeout=10)],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "IPTABLES": "/bin/false"},
            check=False,
        )
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
