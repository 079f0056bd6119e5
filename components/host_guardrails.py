"""Host guardrails: what the Docker host itself enforces for the stack, through pulumi-command.

Docker cannot limit a network's egress by port, and its published ports bypass ufw. The allow-list of
R-NET-5 (and, when DataLens is on, its source CIDRs, R-NET-6) therefore lives in the host's DOCKER-USER
chain: one chain per stack and purpose, created with the stack and removed by ``pulumi destroy``.

:class:`DockerHost` is where every host-side command runs — this machine, or the Docker host over SSH —
and renders the scripts of ``components/host/`` into commands: the script text travels inside the command,
so a remote host needs bash, coreutils and iptables, not a checkout. Every command has a timeout.
"""

from __future__ import annotations

import hashlib
import ipaddress
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pulumi
from pulumi_command import local, remote

from components.catalog import Zone
from components.settings import Settings

TYPE = "fly-potato:host:HostGuardrails"
SCRIPTS = Path(__file__).resolve().parent / "host"
KILL_AFTER_SECONDS = 10


def host_script(script: str, *args: str, timeout: int) -> str:
    """A shell command that runs ``components/host/<script>`` with ``args`` under ``timeout``.

    The script's text is inlined (``bash -c TEXT NAME ARGS…``), so the same command works on this machine
    and over SSH, and a change to the script is a change to the command.
    """
    text = (SCRIPTS / script).read_text()
    words = ["timeout", f"--kill-after={KILL_AFTER_SECONDS}", str(timeout), "bash", "-c", text, script, *args]
    return " ".join(shlex.quote(word) for word in words)


@dataclass(frozen=True)
class SshTarget:
    host: str
    user: str
    port: int
    private_key: str | None = None
    host_key: str | None = None


@dataclass(frozen=True)
class DockerHost:
    """Where host-side commands run: locally, or on the Docker host over SSH (``remote.Command``)."""

    ssh: SshTarget | None
    docker_host: str | None = None  # docker:host of the stack, passed on to local docker CLI calls

    @classmethod
    def of(cls, settings: Settings, docker_host: str | None = None) -> DockerHost:
        """From ``host.ssh``; else from ``docker:host = ssh://user@host[:port]``; else this machine."""
        if docker_host is None:
            docker_host = pulumi.Config("docker").get("host")
        given = settings.raw.host.ssh
        if given is not None:
            key = given.private_key.get_secret_value() if given.private_key else None
            return cls(SshTarget(given.host, given.user, given.port, key, given.host_key), docker_host)
        if docker_host and docker_host.startswith("ssh://"):
            parsed = urlparse(docker_host)
            if not parsed.hostname:
                raise ValueError(f"docker:host = {docker_host!r} names no host; write it like ssh://deploy@203.0.113.7")
            return cls(SshTarget(parsed.hostname, parsed.username or "root", parsed.port or 22), docker_host)
        return cls(None, docker_host)

    @property
    def is_remote(self) -> bool:
        return self.ssh is not None

    def command(
        self,
        name: str,
        *,
        create: pulumi.Input[str],
        delete: pulumi.Input[str] | None = None,
        triggers: Sequence[Any] | None = None,
        stdin: pulumi.Input[str] | None = None,
        timeout_seconds: int,
        opts: pulumi.ResourceOptions,
    ) -> pulumi.CustomResource:
        """A pulumi-command Command on this host; the engine's own timeout backs the script's."""
        bound = pulumi.ResourceOptions(
            custom_timeouts=pulumi.CustomTimeouts(
                create=f"{timeout_seconds + 2 * KILL_AFTER_SECONDS}s",
                update=f"{timeout_seconds + 2 * KILL_AFTER_SECONDS}s",
                delete=f"{timeout_seconds + 2 * KILL_AFTER_SECONDS}s",
            )
        )
        options = pulumi.ResourceOptions.merge(opts, bound)
        if self.ssh is None:
            return local.Command(
                name,
                create=create,
                delete=delete,
                triggers=list(triggers) if triggers is not None else None,
                stdin=stdin,
                interpreter=["/bin/bash", "-c"],
                environment={"DOCKER_HOST": self.docker_host} if self.docker_host else None,
                opts=options,
            )
        ssh = self.ssh
        return remote.Command(
            name,
            connection=remote.ConnectionArgs(
                host=ssh.host,
                user=ssh.user,
                port=ssh.port,
                private_key=pulumi.Output.secret(ssh.private_key) if ssh.private_key else None,
                host_key=ssh.host_key,
                dial_error_limit=5,
                per_dial_timeout=15,
            ),
            create=create,
            delete=delete,
            triggers=list(triggers) if triggers is not None else None,
            stdin=stdin,
            opts=options,
        )


def chain_name(settings: Settings, purpose: str) -> str:
    """``FP-<10 hex>-<purpose letter>``: unique per project and stack, within iptables' 28 characters."""
    digest = hashlib.sha256(f"{settings.project}/{settings.stack}".encode()).hexdigest()[:10]
    return f"FP-{digest}-{purpose[0].upper()}"


def stack_subnets(settings: Settings) -> list[str]:
    """The stack's own networks, collapsed: traffic inside them is Docker's business, not the allow-list's."""
    nets = [ipaddress.ip_network(cidr) for cidr in settings.zone_subnets.values()]
    return [str(net) for net in ipaddress.collapse_addresses(nets)]  # type: ignore[type-var]


def egress_allow_list(settings: Settings) -> list[str]:
    """``PROTO:PORT:CIDR`` tokens of the stack's egress rules, deduplicated, in a stable order."""
    tokens = {
        f"{rule.protocol}:{rule.port}:{ipaddress.ip_network(dest, strict=False)}"
        for rule in settings.raw.egress
        for dest in rule.destinations
    }
    return sorted(tokens)


def egress_rules_enabled(settings: Settings) -> bool:
    flag = settings.raw.host.egress_rules
    return settings.is_prod if flag is None else flag


def egress_apply_args(settings: Settings) -> list[str]:
    args = [
        "apply",
        "--chain",
        chain_name(settings, "egress"),
        "--comment",
        f"{settings.project}:{settings.stack}:egress",
        "--from",
        settings.zone_subnets[Zone.EGRESS],
    ]
    for cidr in stack_subnets(settings):
        args += ["--exempt", cidr]
    for token in egress_allow_list(settings):
        args += ["--allow", token]
    return args


def datalens_apply_args(settings: Settings) -> list[str]:
    # Published ports are DNATed to nginx's address on the edge network, where DOCKER-USER sees them.
    args = [
        "apply",
        "--chain",
        chain_name(settings, "datalens"),
        "--comment",
        f"{settings.project}:{settings.stack}:datalens",
        "--to",
        f"{settings.zone_subnets[Zone.EDGE]}:{settings.ports['datalens']}",
    ]
    for cidr in stack_subnets(settings):
        args += ["--exempt", cidr]
    for cidr in settings.raw.datalens.allow_list:
        args += ["--allow-source", str(ipaddress.ip_network(cidr, strict=False))]
    return args


@dataclass(frozen=True)
class GuardrailChain:
    """One DOCKER-USER chain: its name and the arguments of ``docker-user-chain.sh`` that fill it."""

    name: str
    apply_args: Sequence[str]


@dataclass(frozen=True)
class GuardrailsArgs:
    """Where the commands run, the chains by purpose (in order) and every command's timeout."""

    host: DockerHost
    chains: Mapping[str, GuardrailChain]
    timeout_seconds: int


def guardrail_chains(settings: Settings) -> dict[str, GuardrailChain]:
    """The stack's DOCKER-USER chains by purpose: none unless egress rules are on; DataLens' with an allow-list."""
    wanted: dict[str, list[str]] = {}
    if egress_rules_enabled(settings):
        wanted["egress"] = egress_apply_args(settings)
        if settings.datalens_enabled:
            wanted["datalens"] = datalens_apply_args(settings)
    return {purpose: GuardrailChain(chain_name(settings, purpose), tuple(args)) for purpose, args in wanted.items()}


class HostGuardrails(pulumi.ComponentResource):
    """The stack's DOCKER-USER chains: egress allow-list (R-NET-5) and DataLens sources (R-NET-6)."""

    def __init__(self, name: str, args: GuardrailsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        timeout = args.timeout_seconds
        host = args.host
        # The chain name never changes, so a replacement must remove the old rules before applying the new.
        child = pulumi.ResourceOptions(parent=self, delete_before_replace=True)
        self.chains: dict[str, pulumi.CustomResource] = {}
        for purpose, chain in args.chains.items():
            self.chains[purpose] = host.command(
                f"{name}-{purpose}",
                create=host_script("docker-user-chain.sh", *chain.apply_args, timeout=timeout),
                delete=host_script("docker-user-chain.sh", "remove", "--chain", chain.name, timeout=timeout),
                timeout_seconds=timeout,
                opts=child,
            )
        self.register_outputs({purpose: chain.name for purpose, chain in args.chains.items()})


__all__ = [
    "DockerHost",
    "GuardrailChain",
    "GuardrailsArgs",
    "HostGuardrails",
    "chain_name",
    "datalens_apply_args",
    "egress_allow_list",
    "egress_apply_args",
    "egress_rules_enabled",
    "guardrail_chains",
    "host_script",
    "stack_subnets",
]
