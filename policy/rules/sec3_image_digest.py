"""R-SEC-3: prod images are pinned by sha256 digest."""

from __future__ import annotations

import re

from pulumi_policy import ResourceValidationArgs

from policy import context
from policy.props import is_unknown
from policy.rules._base import Report, ResourceRule, container_of

ID = "image-digest-pinned"
_PINNED = re.compile(r"^(?:[^@\s]+@sha256:[0-9a-f]{64}|sha256:[0-9a-f]{64})$")


def validate(args: ResourceValidationArgs, report: Report) -> None:
    container = container_of(args)
    if container is None or not context.current().is_prod:
        return
    image = container.props.get("image")
    if is_unknown(image):
        report(f"{container.service}: image not known at preview")
    elif not isinstance(image, str) or not _PINNED.match(image):
        report(f"{container.service}: image {image!r} is not pinned by digest (REPOSITORY@sha256:<64 hex>)")


POLICY = ResourceRule(ID, "R-SEC-3", "prod images pinned by sha256 digest", validate)
