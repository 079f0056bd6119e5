"""A service's files on a swarm: Swarm configs (plain) and Swarm secrets, each with the service's uid/gid/mode.

Swarm keeps them in the managers' raft store and mounts them into each task at their target path, owned by
the uid:gid asked for, so a read-only root filesystem needs no companion container (on a host,
``HardenedContainer`` delivers files through one). Configs and secrets are immutable: each is named with a
hash of its content, so new content is a new object (created first), the service moves to it in a rolling
update, and the old one is deleted after that.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
import re
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

CONFIG_DIR = "/etc/fly-potato"
SECRETS_DIR = f"{CONFIG_DIR}/secrets"
HASH_CHARS = 12  # of the sha256 of the content, in the object's name
_MAX_NAME = 64  # Docker's limit on a config or secret name


@dataclass(frozen=True)
class ServiceFile:
    """A file a service reads. Secret content stays a Pulumi secret and becomes a Swarm secret."""

    path: str  # absolute, under CONFIG_DIR (secrets: under SECRETS_DIR)
    content: pulumi.Input[str]
    secret: bool = False
    mode: int = 0o440

    def __post_init__(self) -> None:
        if not self.path.startswith(CONFIG_DIR + "/") or posixpath.normpath(self.path) != self.path:
            raise ValueError(f"service file {self.path} must be a plain absolute path under {CONFIG_DIR}")
        if self.secret and not self.path.startswith(SECRETS_DIR + "/"):
            raise ValueError(f"secret file {self.path} must live under {SECRETS_DIR}")
        if not 0 <= self.mode <= 0o777 or self.mode & 0o007:
            raise ValueError(f"file {self.path}: mode {self.mode:#o} gives other uids access; use 0440 or 0400")

    @property
    def slug(self) -> str:
        """The path below CONFIG_DIR as a name part: secrets/tls.key -> secrets-tls-key."""
        return re.sub(r"[^a-z0-9]+", "-", self.path[len(CONFIG_DIR) + 1 :].lower()).strip("-")


def content_name(prefix: str, content: str) -> str:
    """``<prefix>-<sha256 of content, 12 hex>``, within Docker's 64 characters."""
    digest = hashlib.sha256(content.encode()).hexdigest()[:HASH_CHARS]
    return f"{prefix[: _MAX_NAME - HASH_CHARS - 1]}-{digest}"


def _b64(content: str) -> str:
    return base64.b64encode(content.encode()).decode()


def swarm_file(
    name: str,
    item: ServiceFile,
    prefix: str,
    labels: dict[str, str],
    parent: pulumi.Resource,
) -> docker.Secret | docker.ServiceConfig:
    """The Swarm secret or config holding one file, named ``<prefix>-<slug>-<content hash>``."""
    # A secret's content, its data and its hash-named name all stay secret in the state.
    content = pulumi.Output.secret(item.content) if item.secret else pulumi.Output.from_input(item.content)
    object_name = content.apply(lambda text: content_name(f"{prefix}-{item.slug}", text))
    data = content.apply(_b64)
    # The provider would delete the old object first (an explicit name), but a service still uses it: the new
    # one (a new name) must exist before the service moves to it, and the old one goes after that.
    opts = pulumi.ResourceOptions(parent=parent, delete_before_replace=False)
    if item.secret:
        return docker.Secret(
            f"{name}-{item.slug}",
            name=object_name,
            data=data,
            labels=[docker.SecretLabelArgs(label=k, value=v) for k, v in sorted(labels.items())],
            opts=opts,
        )
    return docker.ServiceConfig(
        f"{name}-{item.slug}",
        name=object_name,
        data=data,
        labels=[docker.ServiceConfigLabelArgs(label=k, value=v) for k, v in sorted(labels.items())],
        opts=opts,
    )


def file_refs(
    files: list[tuple[ServiceFile, docker.Secret | docker.ServiceConfig]], uid: str, gid: str
) -> tuple[list[docker.ServiceTaskSpecContainerSpecSecretArgs], list[docker.ServiceTaskSpecContainerSpecConfigArgs]]:
    """The container spec's references to the files: at their path, owned by uid:gid, with their mode."""
    secrets, configs = [], []
    for item, obj in files:
        if isinstance(obj, docker.Secret):
            secrets.append(
                docker.ServiceTaskSpecContainerSpecSecretArgs(
                    secret_id=obj.id,
                    secret_name=obj.name,
                    file_name=item.path,
                    file_uid=uid,
                    file_gid=gid,
                    file_mode=item.mode,
                )
            )
        else:
            configs.append(
                docker.ServiceTaskSpecContainerSpecConfigArgs(
                    config_id=obj.id,
                    config_name=obj.name,
                    file_name=item.path,
                    file_uid=uid,
                    file_gid=gid,
                    file_mode=item.mode,
                )
            )
    return secrets, configs


__all__ = ["CONFIG_DIR", "HASH_CHARS", "SECRETS_DIR", "ServiceFile", "content_name", "file_refs", "swarm_file"]
