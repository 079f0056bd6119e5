"""HostGuardrails alone, from hand-made args under the mocks: one DOCKER-USER chain per purpose (R-NET-5,
R-NET-6), created and removed through the host's commands."""

from __future__ import annotations

from typing import Any

from components.host_guardrails import DockerHost, GuardrailChain, GuardrailsArgs, HostGuardrails
from tests.support.components import children, component, component_graph
from tests.unit.test_release import script_args

LOCAL = "command:local:Command"
CHAINS = {
    "egress": GuardrailChain(
        "FP-0123456789-E", ("apply", "--chain", "FP-0123456789-E", "--allow", "tcp:443:0.0.0.0/0")
    ),
    "datalens": GuardrailChain(
        "FP-0123456789-D", ("apply", "--chain", "FP-0123456789-D", "--allow-source", "192.0.2.0/24")
    ),
}


def build(chains: dict[str, GuardrailChain]) -> Any:
    def construct(*_: Any) -> None:
        HostGuardrails(
            "guards", GuardrailsArgs(host=DockerHost(None, "tcp://docker:2375"), chains=chains, timeout_seconds=45)
        )

    return construct


def test_one_command_per_chain() -> None:
    graph = component_graph("dev", build(CHAINS))
    guardrails = component(graph, "fly-potato:host:HostGuardrails")
    commands = {r.name: r for r in children(graph, guardrails)}
    assert set(commands) == {"guards-egress", "guards-datalens"}
    for purpose, chain in CHAINS.items():
        command = commands[f"guards-{purpose}"]
        assert command.type == LOCAL
        assert script_args(command) == list(chain.apply_args)
        assert script_args(command, "delete") == ["remove", "--chain", chain.name]
        assert "45" in command.prop("create").split()  # the script's timeout
        # The chain keeps its name, so a replacement removes the old rules first.
        assert command.options["delete_before_replace"] is True
        assert command.prop("environment") == {"DOCKER_HOST": "tcp://docker:2375"}


def test_no_chains_no_commands() -> None:
    graph = component_graph("dev", build({}))
    assert children(graph, component(graph, "fly-potato:host:HostGuardrails")) == []
