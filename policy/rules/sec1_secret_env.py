"""R-SEC-1: no secret in a container's plain environment: no secret-named variable with an inline
value, no value derived from a generated secret, no value of a secure config key."""

from __future__ import annotations

from pulumi_policy import StackValidationArgs

from policy import context, spec
from policy.props import GENERATED_SECRET_TYPES, is_unknown
from policy.rules._base import Report, StackRule, StackView

ID = "no-plaintext-secret-env"


def _secret_name(name: str) -> bool:
    upper = name.upper()
    return any(part in upper for part in spec.SECRET_NAME_PARTS) and not upper.endswith("_FILE")


def validate(args: StackValidationArgs, report: Report) -> None:
    ctx = context.current()
    view = StackView.of(args)
    for container in view.containers():
        service = container.service
        env = container.env()
        for name, value in sorted(env.items()):
            if _secret_name(name):
                report(
                    f"{service}: {name} carries a secret in the environment; deliver it as a file "
                    f"({name}_FILE pointing under the secrets directory)",
                    container.urn,
                )
            elif name.upper().endswith("_FILE") and isinstance(value, str) and not value.startswith("/"):
                report(f"{service}: {name} should name a file, not hold a value", container.urn)
            if isinstance(value, str) and not is_unknown(value):
                leaked = [s for s in ctx.secret_values if len(s) >= 6 and s in value]
                if leaked:
                    report(f"{service}: {name} contains the value of a secure config key", container.urn)
        resource = view.resource(container.urn)
        sources = resource.property_dependencies.get("envs", []) if resource else []
        for dep in sources:
            if dep.type in GENERATED_SECRET_TYPES:
                report(
                    f"{service}: the environment is computed from generated secret {dep.name}; mount it as a "
                    "file instead",
                    container.urn,
                )


POLICY = StackRule(ID, "R-SEC-1", "no secret in container environment: secrets reach containers as files", validate)
