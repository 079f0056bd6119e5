"""Evaluate the real Pulumi program under mocks and record its resource graph.

Used by the unit tests and by the offline plan (``make plan``): no engine, no Docker, no secrets.
Stack config comes from the committed ``Pulumi.<stack>.yaml`` (optionally mutated); secure values are
replaced by placeholders. The deploy preflight asks :func:`offline_host` instead of this machine, unless the
caller passes its own probes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import json
import runpy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from wire import FILES_FOR_LABEL, PROJECT, SERVICE_LABEL

if TYPE_CHECKING:
    from components.preflight import HostProbes

ROOT = Path(__file__).resolve().parent.parent
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # noqa: S105 (Pulumi's secret marker)


@dataclass
class PlannedResource:
    urn: str
    type: str
    name: str
    inputs: dict[str, Any]
    custom: bool
    parent: str
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    provider: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    aliases: list[dict[str, Any]] = field(default_factory=list)

    def prop(self, name: str, default: Any = None) -> Any:
        return unwrap(self.inputs.get(name, default))


@dataclass
class ProgramGraph:
    stack: str
    config: dict[str, Any]
    resources: list[PlannedResource]
    outputs: dict[str, Any]
    error: str | None = None

    def of_type(self, type_: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_]

    def by_name(self, name: str) -> PlannedResource:
        matches = [r for r in self.resources if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name}")
        return matches[0]

    def by_urn(self, urn: str) -> PlannedResource:
        return next(r for r in self.resources if r.urn == urn)

    def containers(self) -> dict[str, PlannedResource]:
        """Service containers keyed by their service label, each with the files it receives: those are
        uploaded through the service's never-started files container into its read-only config volume."""
        found: dict[str, PlannedResource] = {}
        files: dict[str, PlannedResource] = {}
        for resource in self.of_type("docker:index/container:Container"):
            labels = {item["label"]: item["value"] for item in resource.prop("labels", [])}
            if FILES_FOR_LABEL in labels:
                files[labels[FILES_FOR_LABEL]] = resource
            else:
                found[labels[SERVICE_LABEL]] = resource
        for service, loader in files.items():
            if service in found and "uploads" in loader.inputs:
                found[service] = replace(
                    found[service], inputs={**found[service].inputs, "uploads": loader.inputs["uploads"]}
                )
        return found

    def files_containers(self) -> dict[str, PlannedResource]:
        """The never-started containers that deliver each service's files, keyed by service."""
        found = {}
        for resource in self.of_type("docker:index/container:Container"):
            labels = {item["label"]: item["value"] for item in resource.prop("labels", [])}
            if FILES_FOR_LABEL in labels:
                found[labels[FILES_FOR_LABEL]] = resource
        return found

    def ancestors_and_dependencies(self, urn: str) -> set[str]:
        """Every URN this resource waits for: explicit and property dependencies, transitively,
        including what its parents wait for."""
        seen: set[str] = set()
        stack = [urn]
        by_urn = {r.urn: r for r in self.resources}
        while stack:
            current = by_urn.get(stack.pop())
            if current is None:
                continue
            nexts = list(current.dependencies) + [u for deps in current.property_dependencies.values() for u in deps]
            if current.parent:
                nexts.append(current.parent)
            for item in nexts:
                if item not in seen:
                    seen.add(item)
                    stack.append(item)
                    # Waiting for a component means waiting for all of its children.
                    stack.extend(r.urn for r in self.resources if r.parent == item and r.urn not in seen)
        return seen


def unwrap(value: Any) -> Any:
    """Strip Pulumi's secret wrappers from a deserialized input value."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270":
            return unwrap(value.get("value"))
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270"


def stack_config(stack: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The committed stack config with the project prefix stripped, secure values as placeholders,
    and ``overrides`` (dotted paths such as ``ports.postgres``) applied."""
    path = ROOT / f"Pulumi.{stack}.yaml"
    document = yaml.safe_load(path.read_text()) or {}
    config: dict[str, Any] = {}
    for key, value in (document.get("config") or {}).items():
        namespace, _, name = key.rpartition(":")
        if namespace not in ("", PROJECT):
            continue
        config[name] = _placeholders(value)
    for dotted, value in (overrides or {}).items():
        _set_path(config, dotted, value)
    return config


def _placeholders(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return "offline-placeholder-secret"
        return {k: _placeholders(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_placeholders(v) for v in value]
    return value


_DELETE = object()


def _set_path(config: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    target = config
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    if value is None:
        target.pop(parts[-1], None)
    else:
        target[parts[-1]] = value


def _fake_state(args: Any) -> dict[str, Any]:
    inputs = dict(args.inputs)
    digest = hashlib.sha256(f"{args.typ}/{args.name}".encode()).hexdigest()
    if args.typ == "random:index/randomPassword:RandomPassword":
        inputs["result"] = "Mock" + digest[: max(8, int(inputs.get("length", 32)) - 4)]
    elif args.typ == "random:index/randomBytes:RandomBytes":
        raw = bytes.fromhex(digest)[: int(inputs.get("length", 32))]
        inputs["base64"] = base64.b64encode(raw).decode()
        inputs["hex"] = raw.hex()
    elif args.typ == "tls:index/privateKey:PrivateKey":
        inputs.setdefault("private_key_pem", f"-----BEGIN PRIVATE KEY-----\nmock{digest}\n-----END PRIVATE KEY-----\n")
        inputs.setdefault("public_key_pem", f"-----BEGIN PUBLIC KEY-----\nmock{digest}\n-----END PUBLIC KEY-----\n")
        inputs.setdefault("private_key_pem_pkcs8", inputs["private_key_pem"])
    elif args.typ in ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert"):
        inputs.setdefault("cert_pem", f"-----BEGIN CERTIFICATE-----\nmock{digest}\n-----END CERTIFICATE-----\n")
        inputs.setdefault("validity_end_time", "2027-11-21T00:00:00Z")
        inputs.setdefault("ready_for_renewal", False)
    elif args.typ == "tls:index/certRequest:CertRequest":
        inputs.setdefault(
            "cert_request_pem",
            f"-----BEGIN CERTIFICATE REQUEST-----\nmock{digest}\n-----END CERTIFICATE REQUEST-----\n",
        )
    return inputs


def offline_host(config: Mapping[str, Any]) -> HostProbes:
    """The deploy host an offline evaluation assumes: one the stack fits. Its DNS answers with the stack's
    ``public_address`` (any address without one), its Docker daemon grants any open-files limit and has a CPU
    for every limit, so the preflight passes and the plan shows what the program declares."""
    from components.preflight import HostProbes

    address = str(config.get("public_address") or "192.0.2.1")  # TEST-NET-1 when none is configured
    with contextlib.suppress(ValueError):  # a bad address: the settings refuse it before the preflight runs
        address = str(ipaddress.ip_address(address))  # as the settings normalise it
    return HostProbes(resolve=lambda name: {address}, nofile_hard_limit=lambda: None, cpus=lambda: 1 << 16)


def evaluate_program(
    stack: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    config: Mapping[str, Any] | None = None,
    preview: bool = False,
    host: HostProbes | None = None,
    program: Callable[[], Any] | None = None,
) -> ProgramGraph:
    """Run ``__main__.py``'s ``main`` for ``stack`` under mocks. A config error is returned in ``.error``.

    ``program`` runs instead of ``__main__.py`` (e.g. one component built from hand-made args), with the
    same mocks, config and recording.

    ``preview=True`` evaluates as ``pulumi preview`` of a new stack: values computed by providers are
    unknown (``pulumi.output.Unknown`` in the recorded inputs). ``host``: what the deploy preflight finds on
    the deploying machine (DNS, Docker limits); by default :func:`offline_host`."""
    import pulumi
    from pulumi.runtime import mocks as pulumi_mocks
    from pulumi.runtime import settings as runtime_settings
    from pulumi.runtime.sync_await import _sync_await

    _ensure_event_loop()
    raw = dict(config) if config is not None else stack_config(stack, overrides)
    probes = host if host is not None else offline_host(raw)
    recorded: list[PlannedResource] = []

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
            # A preview of a fresh stack: providers compute nothing yet, so their outputs (generated
            # passwords, certificates) stay unknown, as they do in `pulumi preview` before the first update.
            return f"{args.name}-id", dict(args.inputs) if preview else _fake_state(args)

        def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
            return {}, None

    class RecordingMonitor(pulumi_mocks.MockMonitor):
        def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
            response = super().RegisterResource(request)
            if request.type != "pulumi:pulumi:Stack":
                from google.protobuf import json_format
                from pulumi.runtime import rpc

                recorded.append(
                    PlannedResource(
                        urn=response.urn,
                        type=request.type,
                        name=request.name,
                        inputs=rpc.deserialize_properties(request.object),
                        custom=bool(request.custom),
                        parent=request.parent,
                        dependencies=list(request.dependencies),
                        property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
                        provider=request.provider,
                        options={
                            "delete_before_replace": bool(request.deleteBeforeReplace),
                            "retain_on_delete": bool(request.retainOnDelete),
                            "additional_secret_outputs": list(request.additionalSecretOutputs),
                            "replacement_trigger": request.HasField("replacement_trigger"),
                        },
                        aliases=[json_format.MessageToDict(alias) for alias in request.aliases],
                    )
                )
            return response

    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview, monitor=RecordingMonitor(mocks))
    pulumi.runtime.set_all_config(
        {f"{PROJECT}:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}, []
    )
    exported: dict[str, Any] = {}
    original_export = pulumi.export

    def capture(name: str, value: Any) -> None:
        exported[name] = value
        original_export(name, value)

    error: str | None = None
    pulumi.export = capture  # type: ignore[assignment]
    try:

        def main() -> Any:
            if program is not None:
                program()
            else:
                # Not as "__main__": that would ask this machine; main() is given the probes instead.
                runpy.run_path(str(ROOT / "__main__.py"), run_name="fly_potato_program")["main"](host=probes)
            return pulumi.Output.all(*exported.values()) if exported else None

        runtime_settings.SETTINGS.rpc_manager.clear()
        runtime_settings.SETTINGS.outputs.clear()
        outputs_future: Any = None

        async def run() -> None:
            nonlocal outputs_future
            outputs_future = main()

        try:
            _sync_await(pulumi.runtime.stack.run_pulumi_func(lambda: _sync_await(run())))
        except pulumi.RunError as failure:
            error = str(failure)
        resolved: dict[str, Any] = {}
        if error is None:
            for key, value in exported.items():
                resolved[key] = _resolve(value)
    finally:
        pulumi.export = original_export  # type: ignore[assignment]
    return ProgramGraph(
        stack=stack, config=raw, resources=recorded, outputs=resolved if error is None else {}, error=error
    )


def _ensure_event_loop() -> None:
    """The Pulumi runtime needs a current event loop; an async test runner may have closed or unset it."""
    try:
        loop = asyncio.get_event_loop()
        if not loop.is_closed():
            return
    except RuntimeError:
        pass
    asyncio.set_event_loop(asyncio.new_event_loop())


def _resolve(value: Any) -> Any:
    import pulumi
    from pulumi.runtime.sync_await import _sync_await

    if isinstance(value, pulumi.Output):
        future = value.future(with_unknowns=True)
        secret = _sync_await(value.is_secret())
        result = _resolve(_sync_await(future))
        return {"secret": True, "value": result} if secret else result
    if isinstance(value, dict):
        return {k: _resolve(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    return value
