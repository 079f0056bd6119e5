"""R-SEC-3: prod images are pinned by sha256 digest, for containers and Swarm services alike (a registry reference
``host:port/repo@sha256:…`` is pinned)."""

from __future__ import annotations

import re

from pulumi_policy import ResourceValidationArgs

from policy import context
from policy.props import ServiceView, is_unknown
from policy.rules._base import Report, ResourceRule, workload_of

ID = "image-digest-pinned"
_PINNED = re.compile(r"^(?:[^@\s]+@sha256:[0-9a-f]{64}|sha256:[0-9a-f]{64})$")


def validate(args: ResourceValidationArgs, report: Report) -> None:
    container = workload_of(args)
    if container is None or not context.current().is_prod:
        return
    image = container.image
    where = (
        f"{container.service} (docker.Service {container.name}): task_spec.container_spec.image"
        if isinstance(container, ServiceView)
        else f"{container.service}: image"
    )
    if is_unknown(image):
        report(f"{where} not known at preview")
    elif not isinstance(image, str) or not _PINNED.match(image):
        report(f"{where} {image!r} is not pinned by digest (REPOSITORY@sha256:<64 hex>)")


POLICY = ResourceRule(ID, "R-SEC-3", "prod images (containers and Swarm services) pinned by sha256 digest", validate)
