"""Throwaway stacks through the real Pulumi engine (Automation API), for the container tier.

A stack gets its own local file backend in a temp folder, a random passphrase, the dev profile's config
with every published listener moved to a free loopback port, and a stack name of its own, so Docker objects
are ``fly-potato-<stack>-*`` and it runs beside a developer's dev stack. The toolchain is the project's own
(``make toolchain``); without it the tier fails with one sentence, it never skips.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pulumi import automation as auto
from pulumi.automation import events as engine_events

from components.settings import parse_settings
from policy_plan.program import PlannedResource, ProgramGraph, _set_path, stack_config
from wire import PROJECT, STACK_LABEL

ROOT = Path(__file__).resolve().parents[2]
SECRET_SIG = "4dabf18193072939515e22adb298388d"


def published_listeners(base: str = "dev") -> list[str]:
    """The listeners the stack file publishes (the dev profile: all of them on loopback)."""
    settings = parse_settings(stack_config(base), stack=base)
    return [row.listener for row in settings.port_matrix() if row.published]


class EngineUnavailable(RuntimeError):
    """The tier cannot run here; the message says what to run."""


def toolchain_bin() -> Path:
    root = Path(os.environ.get("FLY_POTATO_TOOLCHAIN", Path.home() / ".cache/fly-potato/toolchain"))
    return root / "bin"


def require_engine() -> None:
    """Fail (never skip) when the Pulumi CLI, Docker or the policy venv are missing."""
    if not (toolchain_bin() / "pulumi").exists():
        raise EngineUnavailable(f"no Pulumi CLI in {toolchain_bin()}: run 'make toolchain' (make e2e does)")
    if not (ROOT / "policy/.venv/bin/python").exists():
        raise EngineUnavailable("the policy pack's virtualenv policy/.venv is missing: run 'make policy-venv'")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        raise EngineUnavailable("no Docker engine answers: run 'make engine'")


def free_ports(count: int) -> list[int]:
    """Free TCP ports on 127.0.0.1 (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def stack_document(base: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``Pulumi.<base>.yaml`` with ``fly-potato:`` dotted overrides applied (e.g. ``host_ports.postgres``)."""
    document = yaml.safe_load((ROOT / f"Pulumi.{base}.yaml").read_text())
    config = document.setdefault("config", {})
    for dotted, value in overrides.items():
        top, _, rest = dotted.partition(".")
        key = f"{PROJECT}:{top}"
        if rest:
            nested = config.setdefault(key, {})
            _set_path(nested, rest, value)
        else:
            config[key] = value
    return {"config": config}


def _plain(value: Any) -> Any:
    """Decode the secrets of ``pulumi stack export --show-secrets``."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270" and "plaintext" in value:
            return json.loads(value["plaintext"])
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def local_image_ids(base: str = "dev") -> dict[str, str]:
    """``images.<service>`` → the local image id (``sha256:…``) of the tag the dev stack file names: a prod
    profile's digest pin (R-SEC-3) for images built here by ``make images``."""
    config = yaml.safe_load((ROOT / f"Pulumi.{base}.yaml").read_text())["config"]
    ids = {}
    for service, tag in config[f"{PROJECT}:images"].items():
        done = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tag], capture_output=True, text=True)
        if done.returncode != 0:
            raise EngineUnavailable(f"image {tag} is not built: run 'make images' (make e2e does)")
        ids[f"images.{service}"] = done.stdout.strip()
    return ids


def fit_to_this_host() -> dict[str, float]:
    """``resources.<service>.cpus`` overrides that cap the prod sizing (up to 4 CPUs) at this host's CPUs:
    Docker refuses a container asking for more, and the deploy preflight stops such a stack."""
    from components.catalog import PROD_RESOURCES

    cpus = len(os.sched_getaffinity(0))
    return {f"resources.{name}.cpus": float(cpus) for name, r in PROD_RESOURCES.items() if r.cpus > cpus}


@dataclass(frozen=True)
class Step:
    """One engine event of an operation: what happened to which resource, in the engine's order."""

    sequence: int
    kind: str  # "pre" (the step starts), "outputs" (it finished), "failed", "policy"
    urn: str
    op: str = ""
    policy: str = ""
    level: str = ""
    message: str = ""

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1] if self.urn else ""


def _step(event: engine_events.EngineEvent) -> Step | None:
    if event.resource_pre_event is not None:
        meta = event.resource_pre_event.metadata
        return Step(event.sequence, "pre", meta.urn, str(meta.op.value))
    if event.res_outputs_event is not None:
        meta = event.res_outputs_event.metadata
        return Step(event.sequence, "outputs", meta.urn, str(meta.op.value))
    if event.res_op_failed_event is not None:
        meta = event.res_op_failed_event.metadata
        return Step(event.sequence, "failed", meta.urn, str(meta.op.value))
    if event.policy_event is not None:
        policy = event.policy_event
        return Step(
            event.sequence,
            "policy",
            policy.resource_urn or "",
            policy=policy.policy_name,
            level=policy.enforcement_level,
            message=policy.message,
        )
    return None


@dataclass
class EngineStack:
    """One throwaway stack: its Automation API handle, its backend folder and what the engine recorded."""

    name: str
    base: str = "dev"
    overrides: dict[str, Any] = field(default_factory=dict)
    ports: dict[str, int] | None = None  # default: a free loopback port per published dev listener
    root: Path = ROOT  # the program's checkout (a changed copy of it, for a policy case)
    events: list[str] = field(default_factory=list)  # the operations' output lines
    steps: list[Step] = field(default_factory=list)  # the engine's structured events, in order

    def __post_init__(self) -> None:
        self.backend = Path(tempfile.mkdtemp(prefix=f"fly-potato-{self.name}-state-"))
        self.passphrase = secrets.token_urlsafe(24)
        if self.ports is None:
            listeners = published_listeners(self.base)
            self.ports = dict(zip(listeners, free_ports(len(listeners)), strict=True))
        self.config_file = self.root / f"Pulumi.{self.name}.yaml"
        self.write_config()
        self.env = {
            "PULUMI_BACKEND_URL": f"file://{self.backend}",
            "PULUMI_CONFIG_PASSPHRASE": self.passphrase,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
            "PATH": f"{toolchain_bin()}:{os.environ['PATH']}",
        }
        if "PULUMI_HOME" in os.environ:
            self.env["PULUMI_HOME"] = os.environ["PULUMI_HOME"]
        command = auto.PulumiCommand(root=str(toolchain_bin().parent), skip_version_check=False)
        self.stack = auto.create_or_select_stack(
            stack_name=self.name,
            work_dir=str(self.root),
            opts=auto.LocalWorkspaceOptions(env_vars=self.env, pulumi_command=command),
        )

    def write_config(self) -> None:
        overrides = {f"host_ports.{k}": v for k, v in (self.ports or {}).items()} | self.overrides
        document = stack_document(self.base, overrides)
        if self.config_file.exists():  # keep the salt `pulumi stack init` wrote
            salt = (yaml.safe_load(self.config_file.read_text()) or {}).get("encryptionsalt")
            if salt:
                document = {"encryptionsalt": salt, **document}
        self.config_file.write_text(yaml.safe_dump(document, sort_keys=False))

    def _say(self, line: str) -> None:
        self.events.append(line)
        if os.environ.get("FLY_POTATO_E2E_VERBOSE"):
            print(line, flush=True)

    def _record(self, event: engine_events.EngineEvent) -> None:
        step = _step(event)
        if step is not None:
            self.steps.append(step)

    def up(self, gated: bool = True) -> auto.UpResult:
        """``pulumi up`` as ``make up`` runs it: the preview with the policy pack first (the pack's stack
        policies run at the end of an update, after its resources exist), then the update."""
        if gated:
            self.preview()
        return self.stack.up(
            on_output=self._say, on_event=self._record, policy_packs=[str(ROOT / "policy")], color="never"
        )

    def preview(self, diff: bool = False) -> auto.PreviewResult:
        return self.stack.preview(
            on_output=self._say,
            on_event=self._record,
            policy_packs=[str(ROOT / "policy")],
            color="never",
            diff=diff,
        )

    def destroy(self) -> None:
        self.stack.destroy(on_output=self._say, on_event=self._record, color="never")

    def violations(self) -> set[tuple[str, str, str]]:
        """(policy, resource name, level) of every policy event recorded so far."""
        return {(s.policy, s.name, s.level) for s in self.steps if s.kind == "policy"}

    def outputs(self) -> dict[str, Any]:
        return {key: value.value for key, value in self.stack.outputs().items()}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(toolchain_bin() / "pulumi"), *args, "--stack", self.name],
            cwd=self.root,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=True,
        )

    def state_files(self) -> list[Path]:
        return [p for p in self.backend.rglob("*.json") if p.is_file()]

    def graph(self) -> ProgramGraph:
        """The deployed resources as the engine recorded them, secrets decrypted, as a ProgramGraph."""
        deployment = _plain(json.loads(self.cli("stack", "export", "--show-secrets").stdout))["deployment"]
        resources = [
            PlannedResource(
                urn=r["urn"],
                type=r["type"],
                name=r["urn"].rsplit("::", 1)[-1],
                inputs=r.get("inputs", {}),
                custom=r.get("custom", False),
                parent=r.get("parent", ""),
                dependencies=r.get("dependencies", []),
                property_dependencies=r.get("propertyDependencies", {}),
                provider=r.get("provider", ""),
                options={"outputs": r.get("outputs", {})},
            )
            for r in deployment.get("resources", [])
        ]
        return ProgramGraph(self.name, {}, resources, self.outputs())

    def remove(self) -> None:
        """Destroy what is left (a throwaway stack: protected resources too), forget it, drop its config and state."""
        try:
            with contextlib.suppress(subprocess.CalledProcessError):
                self.cli("state", "unprotect", "--all", "--yes")
            self.destroy()
        finally:
            with contextlib.suppress(auto.CommandError):
                self.stack.workspace.remove_stack(self.name)
            self.config_file.unlink(missing_ok=True)
            shutil.rmtree(self.backend, ignore_errors=True)


def firewall_rules(stack: str) -> list[str]:
    """The host's iptables rules tagged with the stack (its DOCKER-USER chains, R-NET-5/R-NET-6)."""
    listing = subprocess.run(["iptables", "-S"], capture_output=True, text=True, check=True).stdout
    return [line for line in listing.splitlines() if f'"{PROJECT}:{stack}:' in line]


def leftovers(stack: str) -> dict[str, list[str]]:
    """Docker objects still labelled with the stack, and its firewall rules."""
    found = {}
    for kind in ("container", "network", "volume"):
        args = ["docker", kind, "ls", "-q", "--filter", f"label={STACK_LABEL}={stack}"]
        if kind == "container":
            args.insert(3, "-a")
        found[f"{kind}s"] = subprocess.run(args, capture_output=True, text=True, check=True).stdout.split()
    found["firewall_rules"] = firewall_rules(stack)
    return found


def purge(stack: str) -> None:
    """Remove what a failed earlier run of the throwaway stack left (its state is gone with its temp folder)."""
    left = leftovers(stack)
    for kind, args in (
        ("containers", ["rm", "-f", "-v"]),
        ("volumes", ["volume", "rm", "-f"]),
        ("networks", ["network", "rm"]),
    ):
        if left[kind]:
            subprocess.run(["docker", *args, *left[kind]], capture_output=True, check=False)
    chains = {line.split()[1] for line in left["firewall_rules"] if line.startswith("-A FP-")}
    for chain in sorted(chains):
        subprocess.run(
            ["bash", str(ROOT / "components/host/docker-user-chain.sh"), "remove", "--chain", chain],
            capture_output=True,
            check=False,
        )


def published_bindings(stack: str) -> set[str]:
    """``address:port`` of every host binding Docker made for the stack's running containers: the stack's own
    listeners, whatever else (a developer's dev stack) listens on the same ports."""
    ids = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label={STACK_LABEL}={stack}"], capture_output=True, text=True, check=True
    ).stdout.split()
    bindings: set[str] = set()
    for container_id in ids:
        ports = inspect(container_id)["NetworkSettings"]["Ports"] or {}
        for published in ports.values():
            bindings |= {f"{b['HostIp']}:{b['HostPort']}" for b in published or []}
    return bindings


def inspect(name: str) -> dict[str, Any]:
    out = subprocess.run(["docker", "inspect", name], capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]


def logs(name: str, tail: int = 50) -> str:
    done = subprocess.run(["docker", "logs", "--tail", str(tail), name], capture_output=True, text=True, check=True)
    return done.stdout + done.stderr
