"""Release order (R-OPS-2) as resources: pre-deploy backup → migration (exit 0) → backend → smoke.

The order is the resource graph's, not a wiki's. ``ReleaseOrder`` checks the images and fixes the release
fingerprint; ``Platform`` then constructs the steps in order, each a component of its own:

1. ``<name>-backup`` runs ``python3 -m backup dump`` in the running backup container whenever the
   schema fingerprint changes — the release fingerprint (backend image, migration image, migration scripts)
   or Keycloak's image, since Keycloak migrates its own schema when a new version first starts — and must
   succeed. Keycloak's container waits for it too: the dump is taken before the new Keycloak starts, and never
   while Keycloak creates or migrates its schema (on a first deploy Keycloak starts after a dump of its
   still empty database).
2. The one-shot migration container depends on it. The Docker provider records the container's
   ``exit_code`` without failing on a non-zero one, so ``<name>-migration-gate`` turns the code into the
   verdict: anything but 0 fails ``pulumi up`` there.
3. The backend depends on the gate: a failed migration never replaces it (the previous one keeps
   serving; Alembic runs the upgrade in one transaction, so nothing is half-applied).
4. ``<name>-smoke`` polls ``/health/ready`` through nginx — the users' path, TLS included — and fails
   ``pulumi up`` when the new backend is not ready within ``host.smoke_timeout_seconds``.

Rollback (previous image + ``alembic downgrade``) is ``scripts/rollback.sh``; see docs/release.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from components.catalog import Exposure
from components.hardened_container import HardenedContainer
from components.host_guardrails import DockerHost, host_script
from components.settings import Settings
from wire import PROJECT

TYPE = "fly-potato:release:ReleaseOrder"
STEP_TYPES = {
    "backup": "fly-potato:release:PreDeployBackup",
    "gate": "fly-potato:release:MigrationGate",
    "smoke": "fly-potato:release:SmokeCheck",
}
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
SMOKE_PATH = "/health/ready"
SMOKE_INTERVAL_SECONDS = 3


class ReleaseConfigError(pulumi.RunError):
    """The release order cannot be built from the stack config; the message names the key and the fix."""


def migrations_digest(root: Path = MIGRATIONS) -> str:
    """SHA-256 over the migration scripts (path and content), so a new revision changes it."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def release_fingerprint(settings: Settings, migrations: str | None = None) -> str:
    """What a release is: the backend and migration images and the migration scripts. It changes exactly
    when the migration must run again."""
    return _fingerprint(settings.images["backend"], settings.images["migration"], migrations)


def schema_fingerprint(settings: Settings, migrations: str | None = None) -> str:
    """Everything that migrates a schema when it starts: the release, and Keycloak's image. It changes exactly
    when the pre-deploy dump must run again."""
    return _schema_fingerprint(release_fingerprint(settings, migrations), settings.images["keycloak"])


def _fingerprint(backend_image: str, migration_image: str, migrations: str | None = None) -> str:
    parts = [backend_image, migration_image, migrations or migrations_digest()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _schema_fingerprint(release: str, keycloak_image: str) -> str:
    return hashlib.sha256(f"{release}\nkeycloak {keycloak_image}".encode()).hexdigest()


def smoke_target(settings: Settings) -> tuple[str, str, bool]:
    """(URL, curl --resolve pin, https?) of ``/health/ready`` through nginx on the Docker host."""
    https = settings.exposure["nginx_https"] is not Exposure.NONE
    listener = "nginx_https" if https else "nginx_http"
    if settings.exposure[listener] is Exposure.NONE:
        raise ReleaseConfigError(
            f"{PROJECT}:publish.nginx_http = none and nginx_https is unpublished, so the release smoke step has no "
            "way to reach /health/ready; publish one of them"
        )
    port = settings.host_ports[listener]
    scheme = "https" if https else "http"
    shown_port = "" if port == (443 if https else 80) else f":{port}"
    bind = settings.public_bind_address
    address = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(bind, bind)
    return f"{scheme}://{settings.domain}{shown_port}{SMOKE_PATH}", f"{settings.domain}:{port}:{address}", https


@dataclass(frozen=True)
class ReleaseArgs:
    backend_image: str
    migration_image: str
    keycloak_image: str  # Keycloak migrates its schema on a new version's first start: the dump comes first


def release_args(settings: Settings) -> ReleaseArgs:
    """The images a stack's release is made of, on a host and on a swarm alike."""
    images = settings.images
    return ReleaseArgs(
        backend_image=images["backend"], migration_image=images["migration"], keycloak_image=images["keycloak"]
    )


class ReleaseOrder(pulumi.ComponentResource):
    """The release of this update: the images checked, the fingerprint fixed. Its steps (``PreDeployBackup``,
    ``MigrationGate``, ``SmokeCheck``) are the components the platform constructs around the migration and
    the backend; their commands keep the names they had as this component's children."""

    def __init__(self, name: str, args: ReleaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        if args.migration_image != args.backend_image:
            raise ReleaseConfigError(
                f"{PROJECT}:images.migration = {args.migration_image!r} differs from images.backend = "
                f"{args.backend_image!r}; the migrations ship in the backend image, so set both to the "
                "same image (the migration must be the one the new backend expects)"
            )
        super().__init__(TYPE, name, None, opts)
        self._name = name
        self.fingerprint = _fingerprint(args.backend_image, args.migration_image)
        self.schema_fingerprint = _schema_fingerprint(self.fingerprint, args.keycloak_image)
        self.keycloak_image = args.keycloak_image
        self.register_outputs({"fingerprint": self.fingerprint})

    def step_options(self, **options: Any) -> pulumi.ResourceOptions:
        """Options of a step's command: parented by the step, aliased to this component (its old parent)."""
        return pulumi.ResourceOptions(aliases=[pulumi.Alias(parent=self)], **options)

    def step_name(self, step: str) -> str:
        return f"{self._name}-{step}"


def predeploy_reason(release: ReleaseOrder, backend_image: str) -> str:
    """What the pre-deploy dump is taken for, in its log line."""
    return f"release {release.fingerprint[:12]} backend {backend_image} keycloak {release.keycloak_image}"


def predeploy_script(flag: str, target: str, timeout: int, reason: str) -> str:
    """``predeploy-backup.sh`` for the backup ``--container`` (host) or ``--service`` (swarm) ``target``."""
    return host_script(
        "predeploy-backup.sh", flag, target, "--timeout", str(timeout), "--reason", reason, timeout=timeout + 60
    )


@dataclass(frozen=True)
class PreDeployBackupArgs:
    host: DockerHost
    release: ReleaseOrder
    backup: HardenedContainer  # the running backup service
    backend_image: str
    timeout_seconds: int


class PreDeployBackup(pulumi.ComponentResource):
    """Step 1. ``python3 -m backup dump`` in the backup container whenever the schema fingerprint changes;
    ``after`` holds the options that make the migration and Keycloak wait for it."""

    def __init__(self, name: str, args: PreDeployBackupArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(STEP_TYPES["backup"], name, None, opts)
        release, timeout = args.release, args.timeout_seconds
        reason = predeploy_reason(release, args.backend_image)
        self.command = args.host.command(
            release.step_name("backup"),
            create=args.backup.container.name.apply(
                lambda container: predeploy_script("--container", container, timeout, reason)
            ),
            triggers=[release.schema_fingerprint],
            timeout_seconds=timeout + 60,
            opts=release.step_options(parent=self, depends_on=[args.backup.container]),
        )
        self.after = pulumi.ResourceOptions(depends_on=[self.command])
        self.register_outputs({})


@dataclass(frozen=True)
class MigrationGateArgs:
    host: DockerHost
    release: ReleaseOrder
    migration: HardenedContainer
    timeout_seconds: int


class MigrationGate(pulumi.ComponentResource):
    """Step 2. Succeeds only when the migration container exited 0; the backend depends on it."""

    def __init__(self, name: str, args: MigrationGateArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(STEP_TYPES["gate"], name, None, opts)
        release, timeout = args.release, args.timeout_seconds
        container = args.migration.container
        self.command = args.host.command(
            release.step_name("migration-gate"),
            create=pulumi.Output.all(container.name, container.exit_code).apply(
                lambda values: host_script(
                    "migration-gate.sh",
                    "--container",
                    str(values[0]),
                    "--exit-code",
                    "" if values[1] is None else str(values[1]),
                    timeout=timeout,
                )
            ),
            # A new migration container (new image, new run) is checked again.
            triggers=[container.id, release.fingerprint],
            timeout_seconds=timeout,
            opts=release.step_options(parent=self, depends_on=[container]),
        )
        self.register_outputs({})


@dataclass(frozen=True)
class SmokeCheckArgs:
    host: DockerHost
    release: ReleaseOrder
    backend: HardenedContainer
    nginx: HardenedContainer
    ca_cert_pem: pulumi.Input[str] | None
    target: tuple[str, str, bool]  # smoke_target(): URL, curl --resolve pin, https?
    timeout_seconds: int


class SmokeCheck(pulumi.ComponentResource):
    """Step 4. ``/health/ready`` through nginx answers 200 ready in time, or ``pulumi up`` fails."""

    def __init__(self, name: str, args: SmokeCheckArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(STEP_TYPES["smoke"], name, None, opts)
        release, timeout = args.release, args.timeout_seconds
        url, resolve, https = args.target
        trust = https and args.ca_cert_pem is not None
        words = [
            "--url",
            url,
            "--resolve",
            resolve,
            "--timeout",
            str(timeout),
            "--interval",
            str(SMOKE_INTERVAL_SECONDS),
        ]
        if trust:
            words.append("--cacert-stdin")
        backend, nginx = args.backend.container, args.nginx.container
        self.command = args.host.command(
            release.step_name("smoke"),
            create=host_script("smoke.sh", *words, timeout=timeout + 30),
            stdin=args.ca_cert_pem if trust else None,
            # Every new backend or nginx container is smoke-tested again.
            triggers=[backend.id, nginx.id, release.fingerprint],
            timeout_seconds=timeout + 30,
            opts=release.step_options(parent=self, depends_on=[backend, nginx]),
        )
        self.register_outputs({})


__all__ = [
    "MigrationGate",
    "MigrationGateArgs",
    "PreDeployBackup",
    "PreDeployBackupArgs",
    "ReleaseArgs",
    "ReleaseConfigError",
    "ReleaseOrder",
    "SmokeCheck",
    "SmokeCheckArgs",
    "migrations_digest",
    "predeploy_reason",
    "predeploy_script",
    "release_args",
    "release_fingerprint",
    "schema_fingerprint",
    "smoke_target",
]
