"""Apply the program's recorded resource graph to the local Docker engine (container tier).

The Pulumi engine is not installable on this network (the Go module proxy refuses the Pulumi CLI, its
language host and every provider module), so this module stands in for it: it takes the graph that
``policy.program.evaluate_program`` records while running the REAL program under mocks and applies it to the
local Docker engine in dependency order. It is not ``pulumi up``: there is no state, no diff, no preview.

What each resource type becomes (the same calls the providers make, kept small and table-driven):

- ``docker:*`` Network, Volume, Container: Docker Engine API calls over the local socket with exactly the
  recorded inputs (user, read-only rootfs, tmpfs, capabilities, security options, sysctls, ulimits, memory,
  CPUs, healthcheck, restart, log driver, labels, hostname, entrypoint/command, env, mounts, ports with host
  IP, every network with its aliases); uploads as a tar with the recorded owner, group and mode, extracted
  into the per-container config volume; start; wait for ``healthy`` within ``waitTimeout`` when ``wait``;
  one-shot (attached, ``mustRun`` false) containers run to completion and their exit code is kept.
- ``postgresql:*`` (Role, Database, Schema, Extension, Grant, DefaultPrivileges): the SQL they mean, as the
  superuser through the provider's recorded endpoint (the operator bind on 127.0.0.1) — standing in for
  the pulumi_postgresql provider only because the engine is not installable here.
- ``keycloak:*`` (Realm, Group, openid Client, protocol mappers, User, UserGroups): Keycloak's admin REST API
  with a token from ``admin-cli`` for the bootstrap admin at the provider's recorded URL — standing in for
  the pulumi_keycloak provider for the same reason.
- ``command:local:Command``: the recorded interpreter and script, run on this host (the release steps).
- ``random:*``: the mocks' predictable ``Mock…`` values are replaced everywhere in the graph by fresh random
  values of the same length and alphabet (``realize_secrets``; kept in a 0600 file when the stack is kept).
- ``tls:*``: the mocks' placeholder PEMs are replaced by real keys and certificates with the recorded
  subjects, names, usages and validity, everywhere they appear (nginx cannot load a placeholder).

Values a provider computes at apply time are substituted where they are consumed: mock ids
(``<resource>-id``) by the real Keycloak ids, and the migration container's exit code in the release gate.

Usage::

    python -m scripts.apply_graph up      # apply the e2e stack (shifted free host ports), keep it running
    python -m scripts.apply_graph down    # remove every container, network and volume of the e2e stack
    python -m scripts.apply_graph bench   # apply from nothing, print the wall time and the readiness critical path

``scripts/local_stack.py`` uses it to bring up the real dev stack when the Pulumi CLI is not installable.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import http.client
import io
import json
import os
import re
import secrets
import socket
import string
import subprocess
import sys
import tarfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from policy.program import (  # noqa: E402
    PlannedResource,
    ProgramGraph,
    _fake_state,
    evaluate_program,
    stack_config,
)

E2E_STACK = "e2e"
PROJECT = "fly-potato"
STACK_LABEL = "org.flypotato.stack"
PROJECT_LABEL = "org.flypotato.project"
DOCKER_SOCKET = "/var/run/docker.sock"
API = "/v1.41"
# Published listeners of the dev profile; shifted to free loopback ports so a run never clashes.
PUBLISHED_LISTENERS = (
    "postgres",
    "backend",
    "nginx_http",
    "keycloak",
    "oauth2_proxy",
    "prometheus",
    "alertmanager",
    "node_exporter",
    "postgres_exporter",
    "sql_exporter",
)


NOTICE = (
    "applies the program's recorded graph to the local Docker engine (the Pulumi engine is not installable on this "
    "network)"
)


class ApplyError(RuntimeError):
    pass


# -- graph -------------------------------------------------------------------------------------------------


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


def e2e_graph(stack: str = E2E_STACK, overrides: Mapping[str, Any] | None = None) -> ProgramGraph:
    """The dev profile's graph evaluated as stack ``stack`` (so every Docker object is named
    ``fly-potato-<stack>-*`` and labelled with it), with every published host port moved to a free one."""
    ports = dict(
        zip((f"host_ports.{name}" for name in PUBLISHED_LISTENERS), free_ports(len(PUBLISHED_LISTENERS)), strict=True)
    )
    config = stack_config("dev", {**ports, **(overrides or {})})
    graph = evaluate_program(stack, config=config)
    if graph.error:
        raise ApplyError(f"the program failed under mocks: {graph.error}")
    return realize_secrets(graph)


def _walk(value: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: _walk(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, fn) for v in value]
    return value


RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"  # noqa: S105 (a type token)
RANDOM_BYTES = "random:index/randomBytes:RandomBytes"
_ALNUM = string.ascii_letters + string.digits


class _MockArgs:
    """What ``policy.program._fake_state`` reads of a resource registration."""

    def __init__(self, r: PlannedResource) -> None:
        self.typ, self.name, self.inputs = r.type, r.name, dict(r.inputs)


def _urlsafe(standard_base64: str) -> str:
    return standard_base64.replace("+", "-").replace("/", "_")  # components.oauth2_proxy.urlsafe_cookie_secret


def _new_password(r: PlannedResource) -> str:
    """Letters and digits only (the program asks ``special=False``), honouring min_lower/upper/numeric."""
    if r.prop("special", True) or r.prop("overrideSpecial"):
        raise ApplyError(f"{r.name}: RandomPassword with special characters has no translation here")
    length = int(r.prop("length", 32))
    minimums = (
        (string.ascii_lowercase, int(r.prop("minLower", 0))),
        (string.ascii_uppercase, int(r.prop("minUpper", 0))),
        (string.digits, int(r.prop("minNumeric", 0))),
    )
    while True:
        value = "".join(secrets.choice(_ALNUM) for _ in range(length))
        if all(sum(c in alphabet for c in value) >= least for alphabet, least in minimums):
            return value


def _new_bytes(length: int, mock_base64: str) -> bytes:
    """Fresh random bytes. When the mock's standard and URL-safe base64 forms coincide (no ``+`` or ``/``),
    the real value must too: the graph does not say which of the two forms a consumer used."""
    while True:
        raw = secrets.token_bytes(length)
        if _urlsafe(mock_base64) != mock_base64 or not set("+/") & set(base64.b64encode(raw).decode()):
            return raw


def _secret_spec(r: PlannedResource) -> dict[str, Any]:
    return {"type": r.type, "length": int(r.prop("length", 32)), "keepers": r.prop("keepers") or {}}


def realize_secrets(graph: ProgramGraph, store: Path | None = None) -> ProgramGraph:
    """The graph with every RandomPassword/RandomBytes mock value replaced, in every input and output, by a
    fresh random value of the same length and alphabet (RandomBytes: its base64, URL-safe base64 and hex
    forms). With ``store`` the values are kept there (mode 0600) and reused while the resource's length and
    keepers are unchanged, as the random provider keeps its state; without it they live in memory only."""
    saved: dict[str, Any] = json.loads(store.read_text()) if store is not None and store.exists() else {}
    kept: dict[str, Any] = {}
    subs: dict[str, str] = {}
    for r in graph.resources:
        if r.type not in (RANDOM_PASSWORD, RANDOM_BYTES):
            if r.type.startswith("random:"):
                raise ApplyError(f"{r.name}: no translation for {r.type}")
            continue
        fake = _fake_state(_MockArgs(r))
        spec = _secret_spec(r)
        entry = saved.get(r.name)
        if not isinstance(entry, dict) or {k: entry.get(k) for k in spec} != spec:
            if r.type == RANDOM_PASSWORD:
                entry = {**spec, "value": _new_password(r)}
            else:
                raw = _new_bytes(spec["length"], fake["base64"])
                entry = {**spec, "value": base64.b64encode(raw).decode()}
        kept[r.name] = entry
        if r.type == RANDOM_PASSWORD:
            subs[fake["result"]] = entry["value"]
        else:
            real = base64.b64decode(entry["value"])
            subs[fake["base64"]] = entry["value"]
            subs[_urlsafe(fake["base64"])] = _urlsafe(entry["value"])
            subs[fake["hex"]] = real.hex()
    if store is not None and kept != saved:
        store.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(store.parent, 0o700)
        partial = store.with_suffix(".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(kept, out, indent=2, sort_keys=True)
            out.write("\n")
        os.replace(partial, store)
    if store is not None and store.exists():
        os.chmod(store, 0o600)
    order = sorted(subs, key=len, reverse=True)

    def fix(text: str) -> str:
        for mock in order:
            if mock in text:
                text = text.replace(mock, subs[mock])
        return text

    realized = replace(
        graph,
        resources=[replace(r, inputs=_walk(r.inputs, fix)) for r in graph.resources],
        outputs=_walk(graph.outputs, fix),
    )
    left = json.dumps([[r.inputs for r in realized.resources], realized.outputs])
    stale = [mock for mock in subs if mock in left]
    if stale:
        raise ApplyError(f"{len(stale)} generated secret(s) still hold their mock value after substitution")
    return realized


def dependencies(graph: ProgramGraph) -> dict[str, set[str]]:
    """Custom resource URN → the custom resource URNs it waits for: its explicit and property dependencies
    and those of every ancestor component; a dependency on a component means all of its descendants."""
    by_urn = {r.urn: r for r in graph.resources}
    children: dict[str, list[str]] = {}
    for r in graph.resources:
        children.setdefault(r.parent, []).append(r.urn)

    def descendants(urn: str) -> set[str]:
        found: set[str] = set()
        todo = [urn]
        while todo:
            for child in children.get(todo.pop(), []):
                if by_urn[child].custom:
                    found.add(child)
                todo.append(child)
        return found

    def expand(urn: str) -> set[str]:
        target = by_urn.get(urn)
        if target is None:
            return set()
        return {urn} if target.custom else descendants(urn)

    result: dict[str, set[str]] = {}
    for r in graph.resources:
        if not r.custom:
            continue
        direct: set[str] = set()
        node: PlannedResource | None = r
        while node is not None:
            for dep in list(node.dependencies) + [u for deps in node.property_dependencies.values() for u in deps]:
                direct |= expand(dep)
            node = by_urn.get(node.parent)
        if r.provider:  # "<provider urn>::<id>": a resource waits for its explicit provider
            direct |= expand(r.provider.rsplit("::", 1)[0])
        direct.discard(r.urn)
        result[r.urn] = {d for d in direct if d in by_urn}
    return result


# -- Docker Engine API ---------------------------------------------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 600) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class Docker:
    def __init__(self, socket_path: str = DOCKER_SOCKET) -> None:
        self.socket_path = socket_path

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        query: Mapping[str, Any] | None = None,
        ok: tuple[int, ...] = (200, 201, 204, 304),
        timeout: float = 600,
    ) -> Any:
        conn = _UnixConnection(self.socket_path, timeout)
        url = API + path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {}
        data: bytes | None = None
        if raw is not None:
            data, headers["Content-Type"] = raw, "application/x-tar"
        elif body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        try:
            conn.request(method, url, body=data, headers=headers)
            response = conn.getresponse()
            payload = response.read()
        finally:
            conn.close()
        if response.status not in ok:
            raise ApplyError(f"docker {method} {path}: {response.status} {payload.decode(errors='replace').strip()}")
        if payload and response.getheader("Content-Type", "").startswith("application/json"):
            return json.loads(payload)
        return payload

    def inspect(self, container: str) -> dict[str, Any]:
        return self.call("GET", f"/containers/{container}/json")

    def logs(self, container: str, tail: int = 40) -> str:
        raw = self.call("GET", f"/containers/{container}/logs", query={"stdout": 1, "stderr": 1, "tail": tail})
        out, i = [], 0
        while i + 8 <= len(raw):  # multiplexed stream: 8-byte header per frame
            size = int.from_bytes(raw[i + 4 : i + 8], "big")
            out.append(raw[i + 8 : i + 8 + size].decode(errors="replace"))
            i += 8 + size
        return "".join(out) if out else raw.decode(errors="replace")

    def list(self, kind: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        filters = json.dumps({"label": [f"{k}={v}" for k, v in labels.items()]})
        query: dict[str, Any] = {"filters": filters}
        if kind == "containers":
            query["all"] = 1
        found = self.call("GET", "/containers/json" if kind == "containers" else f"/{kind}", query=query)
        return found["Volumes"] or [] if kind == "volumes" else found


# -- conversions ----------------------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def seconds(duration: str) -> float:
    total = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION.findall(duration))
    if not _DURATION.fullmatch(duration) and not re.fullmatch(r"((\d+(?:\.\d+)?)(ms|s|m|h))+", duration):
        raise ApplyError(f"not a duration: {duration!r}")
    return total


def _labels(items: list[dict[str, str]] | None) -> dict[str, str]:
    return {item["label"]: item["value"] for item in items or []}


def container_body(i: Mapping[str, Any]) -> dict[str, Any]:
    """Engine API create body from the recorded docker:Container inputs."""
    networks = i.get("networksAdvanced") or []
    ports = i.get("ports") or []
    exposed: dict[str, dict[str, Any]] = {f"{int(p['internal'])}/{p.get('protocol', 'tcp')}": {} for p in ports}
    bindings: dict[str, list[dict[str, str]]] = {}
    for p in ports:
        key = f"{int(p['internal'])}/{p.get('protocol', 'tcp')}"
        bindings.setdefault(key, []).append(
            {"HostIp": p.get("ip", ""), "HostPort": str(int(p.get("external", 0) or 0)) if p.get("external") else ""}
        )
    caps = i.get("capabilities") or {}
    health = i.get("healthcheck")
    body: dict[str, Any] = {
        "Image": i["image"],
        "Hostname": i.get("hostname", ""),
        "User": i.get("user", ""),
        "Env": list(i.get("envs") or []),
        "Labels": _labels(i.get("labels")),
        "ExposedPorts": exposed,
        "HostConfig": {
            "ReadonlyRootfs": bool(i.get("readOnly")),
            "Privileged": bool(i.get("privileged")),
            "Tmpfs": dict(i.get("tmpfs") or {}),
            "SecurityOpt": list(i.get("securityOpts") or []),
            "CapDrop": list(caps.get("drops") or []),
            "CapAdd": list(caps.get("adds") or []),
            "Sysctls": dict(i.get("sysctls") or {}),
            "Ulimits": [
                {"Name": u["name"], "Soft": int(u["soft"]), "Hard": int(u["hard"])} for u in i.get("ulimits") or []
            ],
            "Memory": int(i["memory"]) * 1024 * 1024 if i.get("memory") else 0,
            "MemorySwap": int(i["memorySwap"]) * 1024 * 1024
            if i.get("memorySwap", 0) > 0
            else int(i.get("memorySwap", 0)),
            "NanoCpus": int(float(i["cpus"]) * 1e9) if i.get("cpus") else 0,
            "RestartPolicy": {"Name": i.get("restart", "no")},
            "LogConfig": {"Type": i.get("logDriver", "json-file"), "Config": dict(i.get("logOpts") or {})},
            "PortBindings": bindings,
            "Mounts": [
                {"Type": m["type"], "Source": m["source"], "Target": m["target"], "ReadOnly": bool(m.get("readOnly"))}
                for m in i.get("mounts") or []
            ],
            "NetworkMode": networks[0]["name"] if networks else "default",
        },
        "NetworkingConfig": {
            "EndpointsConfig": {networks[0]["name"]: {"Aliases": list(networks[0].get("aliases") or [])}}
            if networks
            else {}
        },
    }
    if i.get("command") is not None and len(i["command"]) > 0:
        body["Cmd"] = list(i["command"])
    if i.get("entrypoints") is not None:
        body["Entrypoint"] = list(i["entrypoints"])
    if health:
        body["Healthcheck"] = {
            "Test": list(health["tests"]),
            "Interval": int(seconds(health.get("interval", "0s")) * 1e9),
            "Timeout": int(seconds(health.get("timeout", "0s")) * 1e9),
            "StartPeriod": int(seconds(health.get("startPeriod", "0s")) * 1e9),
            "Retries": int(health.get("retries", 0)),
        }
        if health.get("startInterval"):
            body["Healthcheck"]["StartInterval"] = int(seconds(health["startInterval"]) * 1e9)
    return body


def upload_tar(uploads: list[dict[str, Any]], mounts: list[dict[str, Any]]) -> dict[str, bytes]:
    """One tar per mount point that receives uploads: files relative to that mount, with the recorded owner,
    group and mode. Docker refuses to extract into a read-only root filesystem but not into a volume."""
    targets = sorted((m["target"] for m in mounts), key=len, reverse=True)
    archives: dict[str, tarfile.TarFile] = {}
    buffers: dict[str, io.BytesIO] = {}
    for up in uploads:
        path = up["file"]
        base = next((t for t in targets if path.startswith(t.rstrip("/") + "/")), "/")
        if base not in archives:
            buffers[base] = io.BytesIO()
            archives[base] = tarfile.open(fileobj=buffers[base], mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115 (closed below)
        data = up["content"].encode() if "content" in up else base64.b64decode(up["contentBase64"])
        info = tarfile.TarInfo(path[len(base.rstrip("/")) + 1 :])
        info.size = len(data)
        mode = int(up["permissions"], 8) if up.get("permissions") else (0o744 if up.get("executable") else 0o644)
        info.mode = mode
        info.uid = int(up["owner"]) if up.get("owner") else 0
        info.gid = int(up["group"]) if up.get("group") else 0
        info.mtime = int(time.time())
        archives[base].addfile(info, io.BytesIO(data))
    for tar in archives.values():
        tar.close()
    return {base: buffers[base].getvalue() for base in archives}


# -- TLS realisation -----------------------------------------------------------------------------------------


def realize_tls(graph: ProgramGraph) -> dict[str, str]:
    """Real PEMs for the tls:* resources, keyed by the mocks' placeholder PEM they replace."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    subs: dict[str, str] = {}
    keys: dict[str, Any] = {}  # placeholder private key PEM -> key object
    csrs: dict[str, Any] = {}
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)

    def name(subject: Mapping[str, Any]) -> x509.Name:
        table = {"commonName": NameOID.COMMON_NAME, "organization": NameOID.ORGANIZATION_NAME}
        return x509.Name([x509.NameAttribute(table[k], v) for k, v in subject.items() if k in table])

    def usages(builder: x509.CertificateBuilder, allowed: list[str], is_ca: bool) -> x509.CertificateBuilder:
        builder = builder.add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        ku = {u: u in allowed for u in ("digital_signature", "cert_signing", "crl_signing", "key_encipherment")}
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=ku["digital_signature"],
                content_commitment=False,
                key_encipherment=ku["key_encipherment"],
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ku["cert_signing"],
                crl_sign=ku["crl_signing"],
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        eku = [
            oid
            for u, oid in (
                ("server_auth", ExtendedKeyUsageOID.SERVER_AUTH),
                ("client_auth", ExtendedKeyUsageOID.CLIENT_AUTH),
            )
            if u in allowed
        ]
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        return builder

    def pem(cert: x509.Certificate) -> str:
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    class _Args:
        def __init__(self, r: PlannedResource) -> None:
            self.typ, self.name = r.type, r.name
            self.inputs: dict[str, Any] = {}

    for r in graph.resources:  # recorded in creation order: keys before certificates
        if r.type == "tls:index/privateKey:PrivateKey":
            fake = _fake_state(_Args(r))
            algorithm = r.prop("algorithm", "RSA")
            key: Any = (
                ec.generate_private_key({"P256": ec.SECP256R1(), "P384": ec.SECP384R1()}[r.prop("ecdsaCurve", "P256")])
                if algorithm == "ECDSA"
                else rsa.generate_private_key(65537, int(r.prop("rsaBits", 2048)))
            )
            keys[fake["private_key_pem"]] = key
            subs[fake["private_key_pem"]] = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode()
            subs[fake["public_key_pem"]] = (
                key.public_key()
                .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
                .decode()
            )
        elif r.type == "tls:index/selfSignedCert:SelfSignedCert":
            key = keys[r.prop("privateKeyPem")]
            builder = (
                x509.CertificateBuilder()
                .subject_name(name(r.prop("subject", {})))
                .issuer_name(name(r.prop("subject", {})))
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now)
                .not_valid_after(now + dt.timedelta(hours=float(r.prop("validityPeriodHours"))))
            )
            builder = usages(builder, r.prop("allowedUses", []), bool(r.prop("isCaCertificate")))
            cert = builder.sign(key, hashes.SHA256())
            subs[_fake_state(_Args(r))["cert_pem"]] = pem(cert)
            keys["cert:" + pem(cert)] = cert
        elif r.type == "tls:index/certRequest:CertRequest":
            csrs[_fake_state(_Args(r))["cert_request_pem"]] = (
                r.prop("privateKeyPem"),
                r.prop("subject", {}),
                r.prop("dnsNames", []),
                r.prop("ipAddresses", []),
            )
        elif r.type == "tls:index/locallySignedCert:LocallySignedCert":
            key_pem, subject, dns_names, ips = csrs[r.prop("certRequestPem")]
            ca_key = keys[r.prop("caPrivateKeyPem")]
            ca_cert = keys["cert:" + subs[r.prop("caCertPem")]]
            import ipaddress

            sans = [x509.DNSName(d) for d in dns_names] + [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
            builder = (
                x509.CertificateBuilder()
                .subject_name(name(subject))
                .issuer_name(ca_cert.subject)
                .public_key(keys[key_pem].public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now)
                .not_valid_after(now + dt.timedelta(hours=float(r.prop("validityPeriodHours"))))
            )
            if sans:
                builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            builder = usages(builder, r.prop("allowedUses", []), False)
            subs[_fake_state(_Args(r))["cert_pem"]] = pem(builder.sign(ca_key, hashes.SHA256()))
    return subs


# -- the applier ---------------------------------------------------------------------------------------------


@dataclass
class Applied:
    urn: str
    name: str
    type: str
    started: float
    finished: float
    real_id: str = ""
    exit_code: int | None = None
    docker_started: float | None = None  # State.StartedAt (epoch seconds)
    docker_ready: float | None = None  # end of the first passing healthcheck, or State.FinishedAt for one-shots


@dataclass
class GraphApplier:
    """Applies a recorded ProgramGraph to the local Docker engine (the Pulumi engine is not installable on
    this network). ``apply()`` is all or nothing from the caller's view: on failure it raises with the
    failing resource and its logs; ``destroy()`` removes everything labelled with the graph's stack."""

    graph: ProgramGraph
    docker: Docker = field(default_factory=Docker)
    log: Callable[[str], None] = field(default=lambda line: print(line, flush=True))
    workers: int = 8
    applied: dict[str, Applied] = field(default_factory=dict)
    mock_ids: dict[str, str] = field(default_factory=dict)  # "<name>-id" -> real id
    _lock: threading.Lock = field(default_factory=threading.Lock)
    deviations: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.t0 = time.monotonic()
        self.by_urn = {r.urn: r for r in self.graph.resources}
        self.deps = dependencies(self.graph)
        self.tls = realize_tls(self.graph)
        self._kc_token: tuple[str, float] | None = None

    # values ------------------------------------------------------------------------------------------------
    def inputs(self, r: PlannedResource) -> dict[str, Any]:
        """Recorded inputs with secret wrappers removed and provider-computed placeholders realised."""
        from policy.program import unwrap

        def fix(text: str) -> str:
            for mock, real in self.tls.items():
                if mock in text:
                    text = text.replace(mock, real)
            return self.mock_ids.get(text, text)

        return _walk(unwrap(r.inputs), fix)

    def provider_inputs(self, r: PlannedResource) -> dict[str, Any]:
        for candidate in self.graph.resources:
            if candidate.type.startswith("pulumi:providers:") and r.provider.startswith(candidate.urn):
                return self.inputs(candidate)
        raise ApplyError(f"{r.name}: provider {r.provider!r} not in the graph")

    def deviation(self, text: str) -> None:
        """Something this engine cannot do exactly as recorded: printed and kept for the report."""
        with self._lock:
            self.deviations.append(text)
        self.say(f"DEVIATION {text}")

    def say(self, text: str) -> None:
        self.log(f"[{time.monotonic() - self.t0:6.1f}s] {text}")

    # scheduling --------------------------------------------------------------------------------------------
    def apply(self) -> None:
        pending = {urn for urn in self.deps}
        running: dict[Future[Applied], str] = {}
        failure: BaseException | None = None
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            while (pending or running) and failure is None:
                ready = [u for u in pending if self.deps[u] <= set(self.applied)]
                for urn in sorted(ready):
                    pending.discard(urn)
                    running[pool.submit(self._apply_one, self.by_urn[urn])] = urn
                if not running:
                    stuck = {
                        self.by_urn[u].name: sorted(self.by_urn[d].name for d in self.deps[u] - set(self.applied))
                        for u in pending
                    }
                    raise ApplyError(f"dependency cycle or missing resources: {stuck}")
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    urn = running.pop(future)
                    try:
                        self.applied[urn] = future.result()
                    except BaseException as error:
                        failure = failure or error
            for future in running:  # let in-flight work finish before reporting
                with contextlib.suppress(BaseException):
                    self.applied[running[future]] = future.result()
        if failure is not None:
            raise failure
        self.say(f"applied {len(self.applied)} resources")

    def _apply_one(self, r: PlannedResource) -> Applied:
        started = time.monotonic()
        kind = r.type.split(":")[0]
        handler = {
            "docker": self._docker,
            "postgresql": self._postgresql,
            "keycloak": self._keycloak,
            "command": self._command,
            "random": lambda r: None,
            "tls": lambda r: None,
            "pulumi": self._provider,
        }.get(kind)
        if handler is None:
            raise ApplyError(f"{r.name}: no translation for {r.type}")
        try:
            result = handler(r)
        except ApplyError:
            raise
        except Exception as error:
            raise ApplyError(f"{r.type} {r.name}: {error}") from error
        applied = Applied(r.urn, r.name, r.type, started, time.monotonic())
        if isinstance(result, dict):
            applied.real_id = result.get("id", "")
            applied.exit_code = result.get("exit_code")
            applied.docker_started, applied.docker_ready = result.get("docker_times", (None, None))
        if applied.real_id:
            with self._lock:
                self.mock_ids[f"{r.name}-id"] = applied.real_id
        return applied

    # docker ------------------------------------------------------------------------------------------------
    def _docker(self, r: PlannedResource) -> dict[str, Any] | None:
        i = self.inputs(r)
        if r.type == "docker:index/network:Network":
            body = {
                "Name": i["name"],
                "Driver": i.get("driver", "bridge"),
                "Internal": bool(i.get("internal")),
                "CheckDuplicate": True,
                "Labels": _labels(i.get("labels")),
                "Options": dict(i.get("options") or {}),
                "IPAM": {
                    "Driver": "default",
                    "Config": [
                        {
                            k: v
                            for k, v in (
                                ("Subnet", c.get("subnet")),
                                ("Gateway", c.get("gateway")),
                                ("IPRange", c.get("ipRange")),
                            )
                            if v
                        }
                        for c in i.get("ipamConfigs") or []
                    ],
                },
            }
            created = self.docker.call("POST", "/networks/create", body)
            self.say(f"network {i['name']} ({'internal' if body['Internal'] else 'bridge'})")
            return {"id": created["Id"]}
        if r.type == "docker:index/volume:Volume":
            self.docker.call(
                "POST",
                "/volumes/create",
                {"Name": i["name"], "Labels": _labels(i.get("labels")), "Driver": i.get("driver", "local")},
            )
            return {"id": i["name"]}
        if r.type == "docker:index/container:Container":
            return self._container(i)
        raise ApplyError(f"{r.name}: no translation for {r.type}")

    def _container(self, i: dict[str, Any]) -> dict[str, Any]:
        name = i["name"]
        body = container_body(i)
        limit = engine_nofile_limit()
        for ulimit in body["HostConfig"]["Ulimits"]:
            if ulimit["Name"] == "nofile" and limit and ulimit["Hard"] > limit:
                # runc cannot raise RLIMIT_NOFILE above the engine's own hard limit (EPERM at start).
                self.deviation(
                    f"{name}: nofile {ulimit['Soft']}:{ulimit['Hard']} clamped to this engine's hard limit {limit}"
                )
                ulimit["Soft"], ulimit["Hard"] = min(ulimit["Soft"], limit), limit
        created = self.docker.call("POST", "/containers/create", body, query={"name": name})
        cid = created["Id"]
        for network in (i.get("networksAdvanced") or [])[1:]:
            self.docker.call(
                "POST",
                f"/networks/{network['name']}/connect",
                {"Container": cid, "EndpointConfig": {"Aliases": list(network.get("aliases") or [])}},
            )
        for base, archive in upload_tar(i.get("uploads") or [], i.get("mounts") or []).items():
            self.docker.call("PUT", f"/containers/{cid}/archive", raw=archive, query={"path": base})
        if i.get("start") is False:  # a files container: created so Docker writes its uploads, never run
            self.say(f"container {name}: created (files only)")
            return {"id": cid}
        start = time.monotonic()
        self.docker.call("POST", f"/containers/{cid}/start")
        if i.get("attach"):
            result = self.docker.call("POST", f"/containers/{cid}/wait", timeout=3600)
            code = int(result["StatusCode"])
            self.say(f"container {name}: one-shot exited {code} after {time.monotonic() - start:.1f}s")
            return {"id": cid, "exit_code": code, "docker_times": readiness(self.docker, [cid])[cid]}
        if i.get("wait"):
            deadline = start + float(i.get("waitTimeout", 60))
            while True:
                state = self.docker.inspect(cid)["State"]
                health = (state.get("Health") or {}).get("Status")
                if health == "healthy":
                    break
                if not state.get("Running") and i.get("mustRun", True):
                    raise ApplyError(f"container {name} exited {state.get('ExitCode')}:\n{self.docker.logs(cid)}")
                if time.monotonic() > deadline:
                    raise ApplyError(
                        f"container {name} not healthy within {i.get('waitTimeout')}s (health {health}):\n"
                        + self.docker.logs(cid)
                    )
                time.sleep(0.5)
            self.say(f"container {name}: healthy after {time.monotonic() - start:.1f}s")
            # Read now: Docker keeps only the last five probes.
            return {"id": cid, "docker_times": readiness(self.docker, [cid])[cid]}
        else:
            time.sleep(1)
            state = self.docker.inspect(cid)["State"]
            if not state.get("Running") and i.get("mustRun", True):
                raise ApplyError(f"container {name} is not running:\n{self.docker.logs(cid)}")
            self.say(f"container {name}: started")
        return {"id": cid}

    # providers ---------------------------------------------------------------------------------------------
    def _provider(self, r: PlannedResource) -> None:
        if r.type == "pulumi:providers:postgresql":
            i = self.inputs(r)
            deadline = time.monotonic() + 60
            while True:  # the provider dials the operator bind; it must answer as the superuser
                try:
                    self._pg(i, "postgres").close()
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
        elif r.type == "pulumi:providers:keycloak":
            self._keycloak_token(self.inputs(r))

    # postgresql --------------------------------------------------------------------------------------------
    def _pg(self, provider: Mapping[str, Any], database: str) -> Any:
        import psycopg2

        conn = psycopg2.connect(
            host=provider["host"],
            port=int(provider["port"]),
            user=provider["username"],
            password=provider["password"],
            dbname=database,
            sslmode=provider.get("sslmode", "prefer"),
            connect_timeout=int(provider.get("connectTimeout", 15)),
        )
        conn.autocommit = True
        return conn

    def _postgresql(self, r: PlannedResource) -> dict[str, Any]:
        i = self.inputs(r)
        provider = self.provider_inputs(r)
        kind = r.type.split("/")[1].split(":")[0]
        database, statements = POSTGRES_SQL[kind](i)
        conn = self._pg(provider, database or provider.get("database", "postgres"))
        try:
            with conn.cursor() as cur:
                statements = self._converge_sql(cur, kind, i, statements)
                for statement in statements:
                    cur.execute(statement)
        finally:
            conn.close()
        return {"id": i.get("name", r.name)}

    def _converge_sql(self, cur: Any, kind: str, i: Mapping[str, Any], statements: list[str]) -> list[str]:
        """A role or database kept from an earlier apply (its data volume survived): alter it to the recorded
        inputs instead of creating it. Everything else is already idempotent (IF NOT EXISTS, revoke + grant)."""
        if kind == "role":
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (i["name"],))
            if cur.fetchone():
                return [statements[0].replace("CREATE ROLE", "ALTER ROLE", 1), *statements[1:]]
        elif kind == "database":
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (i["name"],))
            if cur.fetchone():
                return [f"ALTER DATABASE {_ident(i['name'])} OWNER TO {_ident(i['owner'])}"] if i.get("owner") else []
        return statements

    # keycloak ----------------------------------------------------------------------------------------------
    def _keycloak_token(self, provider: Mapping[str, Any]) -> str:
        import requests

        if self._kc_token and self._kc_token[1] > time.monotonic() + 10:
            return self._kc_token[0]
        base = provider["url"].rstrip("/") + provider.get("basePath", "")
        response = requests.post(
            f"{base}/realms/{provider['realm']}/protocol/openid-connect/token",
            data={
                "grant_type": "password",
                "client_id": provider["clientId"],
                "username": provider["username"],
                "password": provider["password"],
            },
            timeout=float(provider.get("clientTimeout", 60)),
        )
        if response.status_code != 200:
            raise ApplyError(f"keycloak admin login: {response.status_code} {response.text[:300]}")
        body = response.json()
        self._kc_token = (body["access_token"], time.monotonic() + float(body.get("expires_in", 60)))
        return body["access_token"]

    def _keycloak(self, r: PlannedResource) -> dict[str, Any]:
        import requests

        i = self.inputs(r)
        provider = self.provider_inputs(r)
        admin = provider["url"].rstrip("/") + provider.get("basePath", "") + "/admin/realms"
        kind = r.type.split(":", 1)[1]
        calls: list[tuple[str, str, Any, Locate]]
        if kind == "index/userGroups:UserGroups":  # one PUT per group (a new user: exactly these groups)
            calls = [
                ("PUT", f"/{i['realmId']}/users/{i['userId']}/groups/{g}", None, None) for g in i.get("groupIds") or []
            ]
        else:
            calls = [KEYCLOAK_API[kind](i)]
        real_id = ""
        for method, path, body, locate in calls:
            token = self._keycloak_token(provider)
            response = requests.request(
                method, admin + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60
            )
            if response.status_code == 409 and method == "POST":  # kept from an earlier apply: converge
                real_id = self._keycloak_update(kind, admin, path, body, token)
                continue
            if response.status_code not in (200, 201, 204):
                raise ApplyError(f"keycloak {r.name}: {method} {path}: {response.status_code} {response.text[:400]}")
            real_id = locate(i, response) if locate else f"{r.name}-applied"
        return {"id": real_id}

    def _keycloak_update(self, kind: str, admin: str, path: str, body: dict[str, Any], token: str) -> str:
        """The object already exists (its database survived): find its id and PUT the recorded representation."""
        import requests

        headers = {"Authorization": f"Bearer {token}"}

        def call(method: str, url: str, **kwargs: Any) -> Any:
            response = requests.request(method, url, headers=headers, timeout=60, **kwargs)
            if response.status_code not in (200, 201, 204):
                raise ApplyError(f"keycloak {method} {url}: {response.status_code} {response.text[:400]}")
            return response

        if kind == "index/realm:Realm":
            call("PUT", f"{admin}/{body['realm']}", json=body)
            return str(body["realm"])
        key, query = {
            "index/group:Group": ("name", {"search": body.get("name"), "exact": "true"}),
            "openid/client:Client": ("clientId", {"clientId": body.get("clientId")}),
            "index/user:User": ("username", {"username": body.get("username"), "exact": "true"}),
        }.get(kind, ("name", {}))  # protocol mappers: by name among the client's
        found = [item for item in call("GET", admin + path, params=query).json() if item.get(key) == body[key]]
        if len(found) != 1:
            raise ApplyError(f"keycloak {kind} {body[key]!r}: exists, but {len(found)} match by {key}")
        object_id = str(found[0]["id"])
        update = {k: v for k, v in body.items() if k != "credentials"}
        call("PUT", f"{admin}{path}/{object_id}", json={**update, "id": object_id})
        for credential in body.get("credentials") or []:
            reset = requests.put(
                f"{admin}{path}/{object_id}/reset-password", json=credential, headers=headers, timeout=60
            )
            # The kept password is the recorded one: the realm's password history refuses to set it again.
            if reset.status_code != 204 and "invalidPasswordHistoryMessage" not in reset.text:
                raise ApplyError(f"keycloak reset-password {body[key]!r}: {reset.status_code} {reset.text[:400]}")
        return object_id

    # command -----------------------------------------------------------------------------------------------
    def _command(self, r: PlannedResource) -> None:
        i = self.inputs(r)
        script = i["create"]
        if "--exit-code ''" in script:  # the provider-computed exit code of the container it gates
            codes = [
                self.applied[d].exit_code
                for d in self.deps[r.urn]
                if d in self.applied and self.applied[d].exit_code is not None
            ]
            if len(codes) != 1:
                raise ApplyError(f"{r.name}: expected one one-shot container to gate, found {len(codes)}")
            script = script.replace("--exit-code ''", f"--exit-code {codes[0]}")
        start = time.monotonic()
        done = subprocess.run(
            [*i.get("interpreter", ["/bin/sh", "-c"]), script],
            input=i.get("stdin"),
            capture_output=True,
            text=True,
            env={**os.environ, **(i.get("environment") or {})},
            timeout=float(i.get("timeout", 0) or 3600),
        )
        if done.returncode != 0:
            raise ApplyError(
                f"command {r.name} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            )
        last = (done.stdout.strip().splitlines() or [""])[-1]
        self.say(f"command {r.name}: ok after {time.monotonic() - start:.1f}s ({last[:100]})")

    # teardown ----------------------------------------------------------------------------------------------
    def destroy(self) -> None:
        destroy_stack(self.graph.stack, self.docker, self.log)


def engine_nofile_limit() -> int | None:
    """The Docker engine's hard RLIMIT_NOFILE (containers cannot exceed it), when dockerd is local."""
    try:
        pid = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True, check=True).stdout.split()[0]
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                hard = line.split()[4]
                return None if hard == "unlimited" else int(hard)
    except (subprocess.CalledProcessError, IndexError, OSError):
        return None
    return None


def destroy_stack(
    stack: str, docker: Docker | None = None, log: Callable[[str], None] = print, *, volumes: bool = True
) -> dict[str, int]:
    """Remove every container, network and (unless ``volumes`` is false) volume labelled with ``stack``."""
    docker = docker or Docker()
    labels = {STACK_LABEL: stack}
    counts = {"containers": 0, "networks": 0, "volumes": 0}
    for c in docker.list("containers", {**labels, PROJECT_LABEL: PROJECT}):
        # v=1 removes the container's anonymous volumes (an image's VOLUME paths), as the Docker provider's
        # remove_volumes does; named volumes (the data) are never removed by it.
        docker.call("DELETE", f"/containers/{c['Id']}", query={"force": 1, "v": 1}, ok=(204, 404))
        counts["containers"] += 1
    for n in docker.list("networks", labels):
        if n["Name"].startswith(f"{PROJECT}-{stack}-"):
            docker.call("DELETE", f"/networks/{n['Id']}", ok=(204, 404))
            counts["networks"] += 1
    for v in docker.list("volumes", labels) if volumes else []:
        if v["Name"].startswith(f"{PROJECT}-{stack}-"):
            docker.call("DELETE", f"/volumes/{v['Name']}", query={"force": 1}, ok=(204, 404))
            counts["volumes"] += 1
    log(f"destroyed stack {stack}: {counts}")
    return counts


def leftovers(stack: str, docker: Docker | None = None) -> dict[str, list[str]]:
    docker = docker or Docker()
    labels = {STACK_LABEL: stack}
    return {
        "containers": [c["Names"][0] for c in docker.list("containers", labels)],
        "networks": [n["Name"] for n in docker.list("networks", labels)],
        "volumes": [v["Name"] for v in docker.list("volumes", labels)],
    }


# -- postgresql: resource -> (database to connect to, SQL) ----------------------------------------------------


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _grantee(name: str) -> str:
    return "PUBLIC" if name == "public" else _ident(name)


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _role_sql(i: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    flags = [
        "LOGIN" if i.get("login") else "NOLOGIN",
        "SUPERUSER" if i.get("superuser") else "NOSUPERUSER",
        "CREATEDB" if i.get("createDatabase") else "NOCREATEDB",
        "CREATEROLE" if i.get("createRole") else "NOCREATEROLE",
        "INHERIT" if i.get("inherit", True) else "NOINHERIT",
        "REPLICATION" if i.get("replication") else "NOREPLICATION",
        f"CONNECTION LIMIT {int(i.get('connectionLimit', -1))}",
        f"PASSWORD {_lit(i['password'])}" if i.get("password") else "",
    ]
    name = _ident(i["name"])
    sql = [f"CREATE ROLE {name} {' '.join(f for f in flags if f)}"]
    sql += [f"GRANT {_ident(member)} TO {name}" for member in i.get("roles") or []]
    if i.get("searchPaths"):
        sql.append(f"ALTER ROLE {name} SET search_path TO {', '.join(_ident(s) for s in i['searchPaths'])}")
    if i.get("statementTimeout"):
        sql.append(f"ALTER ROLE {name} SET statement_timeout TO {int(i['statementTimeout'])}")
    return None, sql


def _database_sql(i: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    options = [
        f"OWNER {_ident(i['owner'])}" if i.get("owner") else "",
        f"TEMPLATE {_ident(i['template'])}" if i.get("template") else "",
        f"ENCODING {_lit(i['encoding'])}" if i.get("encoding") else "",
        f"LC_COLLATE {_lit(i['lcCollate'])}" if i.get("lcCollate") else "",
        f"LC_CTYPE {_lit(i['lcCtype'])}" if i.get("lcCtype") else "",
        f"IS_TEMPLATE {str(bool(i.get('isTemplate'))).lower()}",
        f"ALLOW_CONNECTIONS {str(bool(i.get('allowConnections', True))).lower()}",
    ]
    if "connectionLimit" in i:
        options.append(f"CONNECTION LIMIT {int(i['connectionLimit'])}")
    return None, [f"CREATE DATABASE {_ident(i['name'])} {' '.join(o for o in options if o)}"]


def _schema_sql(i: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    owner = f" AUTHORIZATION {_ident(i['owner'])}" if i.get("owner") else ""
    return i["database"], [f"CREATE SCHEMA IF NOT EXISTS {_ident(i['name'])}{owner}"]


def _extension_sql(i: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    schema = f" SCHEMA {_ident(i['schema'])}" if i.get("schema") else ""
    version = f" VERSION {_lit(i['version'])}" if i.get("version") else ""
    return i["database"], [f"CREATE EXTENSION IF NOT EXISTS {_ident(i['name'])}{schema}{version}"]


_OBJECTS = {"table": "TABLES", "sequence": "SEQUENCES", "function": "FUNCTIONS", "type": "TYPES", "schema": "SCHEMAS"}


def _grant_sql(i: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """The provider's Grant: revoke what the role has on the object, then grant exactly ``privileges``."""
    role, kind, privileges = _grantee(i["role"]), i["objectType"], list(i.get("privileges") or [])
    if kind == "database":
        target = f"DATABASE {_ident(i['database'])}"
    elif kind == "schema":
        target = f"SCHEMA {_ident(i['schema'])}"
    elif kind in ("table", "sequence", "function"):
        target = f"ALL {_OBJECTS[kind]} IN SCHEMA {_ident(i['schema'])}"
    else:
        raise ApplyError(f"grant object type {kind} has no translation")
    sql = [f"REVOKE ALL PRIVILEGES ON {target} FROM {role}"]
    if privileges:
        sql.append(f"GRANT {', '.join(privileges)} ON {target} TO {role}")
    return i["database"], sql


def _default_privileges_sql(i: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    role, owner = _grantee(i["role"]), _ident(i["owner"])
    objects = _OBJECTS[i["objectType"]]
    scope = f" IN SCHEMA {_ident(i['schema'])}" if i.get("schema") else ""
    prefix = f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner}{scope}"
    sql = [f"{prefix} REVOKE ALL ON {objects} FROM {role}"]
    if i.get("privileges"):
        sql.append(f"{prefix} GRANT {', '.join(i['privileges'])} ON {objects} TO {role}")
    return i["database"], sql


POSTGRES_SQL: dict[str, Callable[[Mapping[str, Any]], tuple[str | None, list[str]]]] = {
    "role": _role_sql,
    "database": _database_sql,
    "schema": _schema_sql,
    "extension": _extension_sql,
    "grant": _grant_sql,
    "defaultPrivileges": _default_privileges_sql,
}


# -- keycloak: resource -> (method, path under /admin/realms, body, how to find the real id) --------------------

Locate = Callable[[Mapping[str, Any], Any], str] | None


def _created_id(_i: Mapping[str, Any], response: Any) -> str:
    return response.headers["Location"].rstrip("/").rsplit("/", 1)[-1]


def _bool_attr(value: Any) -> str:
    return "true" if value else "false"


def _realm(i: Mapping[str, Any]) -> tuple[str, str, Any, Locate]:
    sd = i.get("securityDefenses") or {}
    bf = sd.get("bruteForceDetection") or {}
    headers = sd.get("headers") or {}
    body = {
        "realm": i["realm"],
        "enabled": i.get("enabled", True),
        "displayName": i.get("displayName"),
        "sslRequired": i.get("sslRequired"),
        "registrationAllowed": i.get("registrationAllowed"),
        "resetPasswordAllowed": i.get("resetPasswordAllowed"),
        "rememberMe": i.get("rememberMe"),
        "verifyEmail": i.get("verifyEmail"),
        "loginWithEmailAllowed": i.get("loginWithEmailAllowed"),
        "duplicateEmailsAllowed": i.get("duplicateEmailsAllowed"),
        "editUsernameAllowed": i.get("editUsernameAllowed"),
        "passwordPolicy": i.get("passwordPolicy"),
        "revokeRefreshToken": i.get("revokeRefreshToken"),
        "refreshTokenMaxReuse": int(i.get("refreshTokenMaxReuse", 0)),
    }
    for key in ("accessTokenLifespan", "ssoSessionIdleTimeout", "ssoSessionMaxLifespan", "offlineSessionIdleTimeout"):
        if i.get(key):
            body[key] = int(seconds(i[key]))
    if bf:
        body |= {
            "bruteForceProtected": True,
            "permanentLockout": bf.get("permanentLockout", False),
            "failureFactor": int(bf.get("maxLoginFailures", 30)),
            "waitIncrementSeconds": int(bf.get("waitIncrementSeconds", 60)),
            "quickLoginCheckMilliSeconds": int(bf.get("quickLoginCheckMilliSeconds", 1000)),
            "minimumQuickLoginWaitSeconds": int(bf.get("minimumQuickLoginWaitSeconds", 60)),
            "maxFailureWaitSeconds": int(bf.get("maxFailureWaitSeconds", 900)),
            "maxDeltaTimeSeconds": int(bf.get("failureResetTimeSeconds", 43200)),
        }
    if headers:
        body["browserSecurityHeaders"] = {k[0].lower() + k[1:]: v for k, v in headers.items()}
    return "POST", "", {k: v for k, v in body.items() if v is not None}, lambda i, _r: i["realm"]


def _group(i: Mapping[str, Any]) -> tuple[str, str, Any, Locate]:
    return "POST", f"/{i['realmId']}/groups", {"name": i["name"]}, _created_id


def _client(i: Mapping[str, Any]) -> tuple[str, str, Any, Locate]:
    access = i.get("accessType", "CONFIDENTIAL")
    attributes = {
        "oauth2.device.authorization.grant.enabled": _bool_attr(i.get("oauth2DeviceAuthorizationGrantEnabled")),
        "pkce.code.challenge.method": i.get("pkceCodeChallengeMethod", ""),
        "post.logout.redirect.uris": "##".join(i.get("validPostLogoutRedirectUris") or []),
    }
    body = {
        "clientId": i["clientId"],
        "name": i.get("name"),
        "enabled": i.get("enabled", True),
        "protocol": "openid-connect",
        "publicClient": access == "PUBLIC",
        "bearerOnly": access == "BEARER-ONLY",
        "secret": i.get("clientSecret"),
        "standardFlowEnabled": i.get("standardFlowEnabled", False),
        "implicitFlowEnabled": i.get("implicitFlowEnabled", False),
        "directAccessGrantsEnabled": i.get("directAccessGrantsEnabled", False),
        "serviceAccountsEnabled": i.get("serviceAccountsEnabled", False),
        "rootUrl": i.get("rootUrl"),
        "baseUrl": i.get("baseUrl"),
        "redirectUris": i.get("validRedirectUris") or [],
        "webOrigins": i.get("webOrigins") or [],
        "consentRequired": i.get("consentRequired", False),
        "fullScopeAllowed": i.get("fullScopeAllowed", True),
        "attributes": attributes,
    }
    return "POST", f"/{i['realmId']}/clients", {k: v for k, v in body.items() if v is not None}, _created_id


def _mapper(
    protocol_mapper: str, config: Callable[[Mapping[str, Any]], dict[str, str]]
) -> Callable[[Mapping[str, Any]], tuple[str, str, Any, Locate]]:
    def build(i: Mapping[str, Any]) -> tuple[str, str, Any, Locate]:
        claims = {
            "id.token.claim": _bool_attr(i.get("addToIdToken", True)),
            "access.token.claim": _bool_attr(i.get("addToAccessToken", True)),
        }
        if "addToUserinfo" in i:
            claims["userinfo.token.claim"] = _bool_attr(i["addToUserinfo"])
        body = {
            "name": i["name"],
            "protocol": "openid-connect",
            "protocolMapper": protocol_mapper,
            "config": claims | config(i),
        }
        return "POST", f"/{i['realmId']}/clients/{i['clientId']}/protocol-mappers/models", body, _created_id

    return build


def _user(i: Mapping[str, Any]) -> tuple[str, str, Any, Locate]:
    body: dict[str, Any] = {
        "username": i["username"],
        "email": i.get("email"),
        "emailVerified": i.get("emailVerified", False),
        "firstName": i.get("firstName"),
        "lastName": i.get("lastName"),
        "enabled": i.get("enabled", True),
    }
    initial = i.get("initialPassword")
    if initial:
        body["credentials"] = [
            {"type": "password", "value": initial["value"], "temporary": bool(initial.get("temporary"))}
        ]
    return "POST", f"/{i['realmId']}/users", body, _created_id


KEYCLOAK_API: dict[str, Callable[[Mapping[str, Any]], tuple[str, str, Any, Locate]]] = {
    "index/realm:Realm": _realm,
    "index/group:Group": _group,
    "openid/client:Client": _client,
    "openid/userPropertyProtocolMapper:UserPropertyProtocolMapper": _mapper(
        "oidc-usermodel-property-mapper",
        lambda i: {
            "user.attribute": i["userProperty"],
            "claim.name": i["claimName"],
            "jsonType.label": i.get("claimValueType", "String"),
        },
    ),
    "openid/groupMembershipProtocolMapper:GroupMembershipProtocolMapper": _mapper(
        "oidc-group-membership-mapper",
        lambda i: {"claim.name": i["claimName"], "full.path": _bool_attr(i.get("fullPath", True))},
    ),
    "openid/audienceProtocolMapper:AudienceProtocolMapper": _mapper(
        "oidc-audience-mapper",
        lambda i: {
            "included.client.audience": i.get("includedClientAudience", ""),
            "included.custom.audience": i.get("includedCustomAudience", ""),
        },
    ),
    "index/user:User": _user,
}


# -- readiness critical path (from Docker's own timestamps) ---------------------------------------------------


def _ts(value: str) -> float:
    value = re.sub(r"(\.\d{6})\d*", r"\1", value).replace("Z", "+00:00")
    return dt.datetime.fromisoformat(value).timestamp()


def readiness(docker: Docker, names: list[str]) -> dict[str, tuple[float, float | None]]:
    """Container name → (StartedAt, first healthy probe end) as epoch seconds, read from ``docker inspect``."""
    found = {}
    for name in names:
        state = docker.inspect(name)["State"]
        started = _ts(state["StartedAt"])
        healthy = None
        for probe in (state.get("Health") or {}).get("Log") or []:
            if probe.get("ExitCode") == 0:
                healthy = _ts(probe["End"])
                break
        if state.get("Status") == "exited":
            healthy = _ts(state["FinishedAt"])
        found[name] = (started, healthy)
    return found


def critical_path(applier: GraphApplier) -> tuple[float, list[str]]:
    """Longest chain of container start-to-ready durations (Docker's timestamps) along the dependency graph."""
    containers = {
        urn: a for urn, a in applier.applied.items() if a.docker_started is not None and a.docker_ready is not None
    }
    memo: dict[str, tuple[float, list[str]]] = {}

    def longest(urn: str) -> tuple[float, list[str]]:
        if urn not in memo:
            best: tuple[float, list[str]] = (0.0, [])
            for dep in applier.deps[urn]:
                candidate = longest(dep)
                if candidate[0] > best[0]:
                    best = candidate
            own = containers.get(urn)
            if own is not None:
                best = (best[0] + (own.docker_ready or 0) - (own.docker_started or 0), [*best[1], own.name])
            memo[urn] = best
        return memo[urn]

    return max((longest(urn) for urn in applier.applied), key=lambda item: item[0], default=(0.0, []))


def main(argv: list[str]) -> int:
    action = argv[1] if len(argv) > 1 else "up"
    if action == "down":
        destroy_stack(E2E_STACK)
        return 0
    if action == "bench":
        destroy_stack(E2E_STACK, log=lambda _line: None)
        graph = e2e_graph()
        applier = GraphApplier(graph, log=lambda _line: None)
        started = time.monotonic()
        try:
            applier.apply()
            wall = time.monotonic() - started
            path_seconds, chain = critical_path(applier)
            first = min(a.docker_started for a in applier.applied.values() if a.docker_started)
            last = max(a.docker_ready for a in applier.applied.values() if a.docker_ready)
        finally:
            destroy_stack(E2E_STACK, log=lambda _line: None)
        print(f"container tier: {NOTICE}")
        print(f"apply from nothing (wall)           {wall:7.1f} s")
        print(f"first container start -> last ready {last - first:7.1f} s")
        print(f"readiness critical path (Docker)    {path_seconds:7.1f} s  ({' -> '.join(chain)})")
        print(f"apply / critical path               {wall / path_seconds if path_seconds else float('nan'):7.2f}")
        return 0
    graph = e2e_graph()
    applier = GraphApplier(graph)
    applier.say(NOTICE)
    if any(leftovers(E2E_STACK).values()):
        destroy_stack(E2E_STACK)
    started = time.monotonic()
    applier.apply()
    ports = {row["listener"]: row["host_port"] for row in graph.outputs["port_matrix"] if row["host_port"]}
    print(
        json.dumps({"stack": graph.stack, "apply_seconds": round(time.monotonic() - started, 1), "host_ports": ports})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
