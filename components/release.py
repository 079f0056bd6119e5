"""Release order (R-OPS-2) as resources: pre-deploy backup → migration (exit 0) → backend → smoke.

The order is the resource graph's, not a wiki's:

1. ``<name>-backup`` runs ``python3 -m backup dump`` in the running backup container whenever the
   release fingerprint (backend image, migration image, migration scripts) changes, and must succeed.
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
from pathlib import Path

import pulumi

from components.catalog import Exposure
from components.container import HardenedContainer
from components.host_guardrails import DockerHost, host_script
from components.settings import Settings
from wire import PROJECT

TYPE = "fly-potato:release:ReleaseOrder"
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
    when the backup must run again before migrating."""
    parts = [settings.images["backend"], settings.images["migration"], migrations or migrations_digest()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


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


class ReleaseOrder(pulumi.ComponentResource):
    """The release steps around the migration and the backend; built in the order the platform composes them."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        host: DockerHost,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        if settings.images["migration"] != settings.images["backend"]:
            raise ReleaseConfigError(
                f"{PROJECT}:images.migration = {settings.images['migration']!r} differs from images.backend = "
                f"{settings.images['backend']!r}; the migrations ship in the backend image, so set both to the "
                "same image (the migration must be the one the new backend expects)"
            )
        super().__init__(TYPE, name, None, opts)
        self._name = name
        self._settings = settings
        self._host = host
        self.fingerprint = release_fingerprint(settings)
        self.backup: pulumi.CustomResource | None = None
        self.gate: pulumi.CustomResource | None = None
        self.smoke: pulumi.CustomResource | None = None
        self.register_outputs({"fingerprint": self.fingerprint})

    def pre_deploy_backup(self, backup: HardenedContainer | None) -> pulumi.ResourceOptions:
        """Step 1. Returns the options that make the migration wait for it (none without a backup service)."""
        if backup is None:
            return pulumi.ResourceOptions()
        timeout = self._settings.raw.host.backup_timeout_seconds
        reason = f"release {self.fingerprint[:12]} backend {self._settings.images['backend']}"
        self.backup = self._host.command(
            f"{self._name}-backup",
            create=backup.container.name.apply(
                lambda container: host_script(
                    "predeploy-backup.sh",
                    "--container",
                    container,
                    "--timeout",
                    str(timeout),
                    "--reason",
                    reason,
                    timeout=timeout + 60,
                )
            ),
            triggers=[self.fingerprint],
            timeout_seconds=timeout + 60,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[backup.container]),
        )
        return pulumi.ResourceOptions(depends_on=[self.backup])

    def migration_gate(self, migration: HardenedContainer) -> pulumi.CustomResource:
        """Step 2. Succeeds only when the migration container exited 0; the backend depends on it."""
        timeout = self._settings.raw.host.command_timeout_seconds
        container = migration.container
        self.gate = self._host.command(
            f"{self._name}-migration-gate",
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
            triggers=[container.id, self.fingerprint],
            timeout_seconds=timeout,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[container]),
        )
        return self.gate

    def smoke_step(
        self,
        backend: HardenedContainer,
        nginx: HardenedContainer,
        ca_cert_pem: pulumi.Input[str] | None,
    ) -> pulumi.CustomResource:
        """Step 4. ``/health/ready`` through nginx answers 200 ready in time, or ``pulumi up`` fails."""
        timeout = self._settings.raw.host.smoke_timeout_seconds
        url, resolve, https = smoke_target(self._settings)
        trust = https and ca_cert_pem is not None
        args = [
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
            args.append("--cacert-stdin")
        self.smoke = self._host.command(
            f"{self._name}-smoke",
            create=host_script("smoke.sh", *args, timeout=timeout + 30),
            stdin=ca_cert_pem if trust else None,
            # Every new backend or nginx container is smoke-tested again.
            triggers=[backend.container.id, nginx.container.id, self.fingerprint],
            timeout_seconds=timeout + 30,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[backend.container, nginx.container]),
        )
        return self.smoke


__all__ = [
    "ReleaseConfigError",
    "ReleaseOrder",
    "migrations_digest",
    "release_fingerprint",
    "smoke_target",
]
