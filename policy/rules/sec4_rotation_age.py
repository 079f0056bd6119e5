"""R-SEC-4: secrets rotate at least every 90 days; every generated secret follows the rotation epoch."""

from __future__ import annotations

from datetime import date

from pulumi_policy import EnforcementLevel, StackValidationArgs

from policy import context, spec
from policy.rules._base import Report, StackRule, StackView

ID = "secret-rotation-age"
ROTATING = ("random:index/randomPassword:RandomPassword", "random:index/randomBytes:RandomBytes")


def validate(args: StackValidationArgs, report: Report) -> None:
    ctx = context.current()
    epoch = ctx.setting("secrets.rotation_epoch", 1)
    rotated_on = ctx.setting("secrets.rotated_on")
    if rotated_on in (None, ""):
        report("secrets.rotated_on is not set; record the date of the last rotation")
    else:
        try:
            age = (ctx.today - date.fromisoformat(str(rotated_on))).days
        except ValueError:
            report(f"secrets.rotated_on = {rotated_on!r} is not a date (YYYY-MM-DD)")
        else:
            if age > spec.MAX_ROTATION_AGE_DAYS:
                report(
                    f"secrets were last rotated {age} days ago ({rotated_on}); bump secrets.rotation_epoch and "
                    "secrets.rotated_on (every 90 days at least)"
                )
    view = StackView.of(args)
    for type_ in ROTATING:
        for resource in view.of_type(type_):
            keepers = resource.props.get("keepers") or {}
            if str(keepers.get("rotation_epoch")) != str(epoch):
                report(f"{resource.name} does not rotate with secrets.rotation_epoch = {epoch}", resource.urn)


POLICY = StackRule(
    ID,
    "R-SEC-4",
    "secrets rotated within 90 days, all with the stack's rotation epoch (advisory)",
    validate,
    enforcement_level=EnforcementLevel.ADVISORY,
)
