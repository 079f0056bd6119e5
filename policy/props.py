"""Reading resource properties the way the policies need them.

pulumi-policy hands properties over wrapped in proxies that raise ``UnknownValueError`` when a value
is unknown (during preview); the SDK turns that into an *advisory* "can't run policy during preview"
note, so a mandatory rule would silently pass. The policies therefore read plain copies where unknown
values are the :data:`UNKNOWN` marker and report them as violations themselves.
"""

from __future__ import annotations

import base64
import binascii
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wire import FILES_FOR_LABEL, SERVICE_LABEL

# pulumi-policy's sentinels for values that are not known until apply (pulumi_policy.proxy).
UNKNOWN_SENTINELS = frozenset(
    {
        "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",  # boolean
        "3eeb2bf0-c639-47a8-9e75-3b44932eb421",  # number
        "04da6b54-80e4-46f7-96ec-b56ff0331ba9",  # string (also what the SDKs send for any computed value)
        "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",  # array
        "030794c1-ac77-496b-92df-f27374a8bd58",  # asset
        "e48ece36-62e2-4504-bad9-02848725956a",  # archive
        "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",  # object
    }
)


class _Unknown:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<unknown>"

    def __bool__(self) -> bool:
        return False


UNKNOWN: Any = _Unknown()

CONTAINER = "docker:index/container:Container"
SERVICE = "docker:index/service:Service"  # a Swarm service (``target: swarm``)
NETWORK = "docker:index/network:Network"
SERVICE_CONFIG = "docker:index/serviceConfig:ServiceConfig"  # a file of a Swarm service (its data is base64)
SWARM_SECRET = "docker:index/secret:Secret"  # noqa: S105 (a type token: a Swarm secret, never read by a rule)
GENERATED_SECRET_TYPES = frozenset(
    {
        "random:index/randomPassword:RandomPassword",
        "random:index/randomBytes:RandomBytes",
        "random:index/randomString:RandomString",
        "tls:index/privateKey:PrivateKey",
    }
)


def is_unknown(value: Any) -> bool:
    return value is UNKNOWN


def contains_unknown(value: Any) -> bool:
    if value is UNKNOWN:
        return True
    if isinstance(value, Mapping):
        return any(contains_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_unknown(v) for v in value)
    return False


def plain(value: Any) -> Any:
    """A plain copy of (proxied) properties, with unknown values replaced by UNKNOWN."""
    target = _target(value)
    if isinstance(target, str):
        return UNKNOWN if target in UNKNOWN_SENTINELS else target
    if isinstance(target, Mapping):
        return {k: plain(_raw_item(target, k)) for k in target}
    if isinstance(target, Sequence) and not isinstance(target, (bytes, bytearray)):
        return [plain(_raw_index(target, i)) for i in range(len(target))]
    inner = getattr(target, "value", None)  # pulumi_policy.Secret (only in remediations)
    if type(target).__name__ == "Secret" and inner is not None:
        return plain(inner)
    return target


def _target(value: Any) -> Any:
    # pulumi_policy's _DictProxy/_ListProxy expose the wrapped object under the "__target" key.
    if type(value).__name__ in ("_DictProxy", "_ListProxy", "_DictSecretsProxy", "_ListSecretsProxy"):
        return value["__target"]
    return value


def _raw_item(mapping: Mapping[str, Any], key: str) -> Any:
    return dict.__getitem__(mapping, key) if isinstance(mapping, dict) else mapping[key]


def _raw_index(sequence: Sequence[Any], index: int) -> Any:
    return list.__getitem__(sequence, index) if isinstance(sequence, list) else sequence[index]


def labels_of(props: Mapping[str, Any]) -> dict[str, Any]:
    labels = props.get("labels")
    if not isinstance(labels, list):
        return {}
    return {str(item.get("label")): item.get("value") for item in labels if isinstance(item, Mapping)}


@dataclass
class Binding:
    """One published port of a container."""

    service: str
    host_ip: Any  # str, or UNKNOWN
    host_port: Any
    container_port: Any
    protocol: str
    mode: str | None = None  # a Swarm publish: "host" or "ingress"; None for a container's port

    @property
    def ip(self) -> str:
        # Docker binds every address when no host IP is given.
        return "0.0.0.0" if self.host_ip in (None, "") else self.host_ip

    def describe(self) -> str:
        published = f"{self.service} {self.ip}:{_num(self.host_port)}->{_num(self.container_port)}/{self.protocol}"
        return published if self.mode is None else f"{published} ({self.mode} mode)"


def _num(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@dataclass
class ContainerView:
    """A Docker container's inputs, read for the policies."""

    name: str
    urn: str
    props: dict[str, Any]

    is_service = False

    @property
    def labels(self) -> dict[str, Any]:
        return labels_of(self.props)

    @property
    def image(self) -> Any:
        return self.props.get("image")

    @property
    def files_for(self) -> str | None:
        """The service whose files this container delivers, or None for a service container."""
        value = self.labels.get(FILES_FOR_LABEL)
        return value if isinstance(value, str) else None

    @property
    def service(self) -> str:
        service = self.labels.get(SERVICE_LABEL)
        return service if isinstance(service, str) else self.name

    def bindings(self) -> list[Binding]:
        ports = self.props.get("ports")
        if not isinstance(ports, list):
            return []
        return [
            Binding(
                service=self.service,
                host_ip=item.get("ip"),
                host_port=_num(item.get("external")),
                container_port=_num(item.get("internal")),
                protocol=item.get("protocol") or "tcp",
            )
            for item in ports
            if isinstance(item, Mapping)
        ]

    def env(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for entry in self.props.get("envs") or []:
            if isinstance(entry, str):
                name, _, value = entry.partition("=")
                result[name] = value
        return result

    def uploads(self) -> dict[str, Any]:
        """The files the service's process receives: path in the container -> content (UNKNOWN when not known at
        preview)."""
        files: dict[str, Any] = {}
        uploads = self.props.get("uploads")
        if not isinstance(uploads, list):
            return files
        for item in uploads:
            if isinstance(item, Mapping) and isinstance(item.get("file"), str):
                content = item.get("content")
                if content is None and item.get("contentBase64") is not None:
                    content = item.get("contentBase64")
                files[item["file"]] = content
        return files

    def secret_files(self) -> set[str]:
        """The paths of the secret files it receives: uploads readable by their owner only (0400)."""
        uploads = self.props.get("uploads")
        return {
            item["file"]
            for item in (uploads if isinstance(uploads, list) else [])
            if isinstance(item, Mapping) and item.get("permissions") == "0400" and isinstance(item.get("file"), str)
        }

    def command(self) -> list[Any]:
        command = self.props.get("command")
        return list(command) if isinstance(command, list) else []

    def entrypoint(self) -> list[Any]:
        entrypoint = self.props.get("entrypoints")
        return list(entrypoint) if isinstance(entrypoint, list) else []

    def argv(self) -> list[Any]:
        """The process' arguments: the command, or the entrypoint when there is no command (a Swarm service's
        ``commands`` often hold the whole process); a ``sh -c SCRIPT`` start (also one a wrapper such as the metrics
        gate runs as its command) is split into the words of its script."""
        command = self.command()
        full = [*self.entrypoint(), *command]
        if len(full) >= 2 and full[-2] == "-c" and isinstance(full[-1], str):
            try:
                return shlex.split(full[-1])
            except ValueError:
                return command
        return command or self.entrypoint()

    def network_names(self) -> list[Any]:
        return [n.get("name") for n in self.props.get("networksAdvanced") or [] if isinstance(n, Mapping)]


@dataclass
class ServiceView(ContainerView):
    """A Swarm service's inputs (``docker.Service``), read with the accessors of :class:`ContainerView` so the
    rules written for containers apply to services too. The container's settings are under
    ``taskSpec.containerSpec``; a Swarm publish cannot bind an address, so every binding is on 0.0.0.0 (every
    address of the node in host mode, of every node in ingress mode).

    Its files are Swarm configs and secrets, other resources of the stack that ``containerSpec.configs`` and
    ``.secrets`` reference: ``files`` holds their content by path in the task, as a stack policy finds it
    (``StackView.services``); a resource policy sees none."""

    files: dict[str, Any] = field(default_factory=dict)

    is_service = True

    @property
    def files_for(self) -> str | None:
        return None  # a service receives its files as Swarm configs, never through a files container

    @property
    def task_spec(self) -> dict[str, Any]:
        return _mapping(self.props.get("taskSpec"))

    @property
    def container_spec(self) -> dict[str, Any]:
        return _mapping(self.task_spec.get("containerSpec"))

    @property
    def image(self) -> Any:
        return self.container_spec.get("image")

    def bindings(self) -> list[Binding]:
        endpoint = _mapping(self.props.get("endpointSpec"))
        ports = endpoint.get("ports")
        if not isinstance(ports, list):
            return []
        return [
            Binding(
                service=self.service,
                host_ip=None,
                host_port=_num(item.get("publishedPort")),
                container_port=_num(item.get("targetPort")),
                protocol=item.get("protocol") or "tcp",
                mode=item.get("publishMode") or "ingress",  # Docker's default
            )
            for item in ports
            if isinstance(item, Mapping) and item.get("publishedPort") not in (None, 0)
        ]

    def env(self) -> dict[str, Any]:
        env = self.container_spec.get("env")
        return dict(env) if isinstance(env, Mapping) else {}

    def uploads(self) -> dict[str, Any]:
        """Task path -> content of the Swarm configs it references (UNKNOWN when not known at preview) and of its
        Swarm secrets (always UNKNOWN: a rule never reads a secret)."""
        return dict(self.files)

    def config_refs(self) -> list[dict[str, Any]]:
        """``containerSpec.configs``: each with ``configId``, ``configName`` and ``fileName`` (the path in the task)."""
        return _mappings(self.container_spec.get("configs"))

    def secret_refs(self) -> list[dict[str, Any]]:
        """``containerSpec.secrets``: each with ``secretId``, ``secretName``, ``fileName`` and ``fileMode``."""
        return _mappings(self.container_spec.get("secrets"))

    def secret_files(self) -> set[str]:
        """The paths of its Swarm secrets readable by their owner only (``file_mode`` 0400)."""
        return {
            ref["fileName"]
            for ref in self.secret_refs()
            if isinstance(ref.get("fileName"), str) and _num(ref.get("fileMode")) == 0o400
        }

    def command(self) -> list[Any]:
        args = self.container_spec.get("args")
        return list(args) if isinstance(args, list) else []

    def entrypoint(self) -> list[Any]:
        commands = self.container_spec.get("commands")
        return list(commands) if isinstance(commands, list) else []

    def network_names(self) -> list[Any]:
        """The networks of ``task_spec.networks_advanced``: their names (or ids, which the names stand for in
        a network's ``name`` input only when given as names)."""
        names = []
        for item in self.task_spec.get("networksAdvanceds") or []:
            if isinstance(item, Mapping):
                names.append(item.get("name") if item.get("name") not in (None, "") else item.get("id"))
        return names

    def constraints(self) -> list[Any]:
        placement = _mapping(self.task_spec.get("placement"))
        constraints = placement.get("constraints")
        return list(constraints) if isinstance(constraints, list) else []

    @property
    def one_shot(self) -> bool:
        """Runs to completion: a job mode, or a restart condition of none (the migration)."""
        mode = _mapping(self.props.get("mode"))
        if mode.get("replicatedJob") is not None or mode.get("globalJob") is not None:
            return True
        return _mapping(self.task_spec.get("restartPolicy")).get("condition") == "none"


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _mappings(value: Any) -> list[dict[str, Any]]:
    return [dict(item) for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def config_content(data: Any) -> Any:
    """The text a Swarm config holds: its ``data`` is base64 (the provider also takes URL-safe base64); UNKNOWN
    when not known at preview, or when it is not base64 of UTF-8 text (then nothing can be checked in it)."""
    if not isinstance(data, str):
        return UNKNOWN
    for decode in (lambda text: base64.b64decode(text, validate=True), base64.urlsafe_b64decode):
        try:
            return decode(data).decode("utf-8")
        except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
            continue
    return UNKNOWN


def workload_view(resource_type: str, name: str, urn: str, props: Any) -> ContainerView | None:
    """A container's or a Swarm service's view, or None for other types."""
    if resource_type == CONTAINER:
        return ContainerView(name=name, urn=urn, props=plain(props))
    if resource_type == SERVICE:
        return ServiceView(name=name, urn=urn, props=plain(props))
    return None


def container_view(resource_type: str, name: str, urn: str, props: Any) -> ContainerView | None:
    if resource_type != CONTAINER:
        return None
    return ContainerView(name=name, urn=urn, props=plain(props))


def flag_value(command: list[Any], flag: str) -> Any:
    """Value of ``--flag=value`` / ``--flag value`` / ``-flag value`` in an argument list, or None."""
    for index, arg in enumerate(command):
        if not isinstance(arg, str):
            continue
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1 :]
        if arg == flag and index + 1 < len(command):
            return command[index + 1]
    return None
