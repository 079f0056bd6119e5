"""R-SEC-1: no secret in a container's plain environment: no secret-named variable with an inline
value, no value derived from a generated secret, no value of a secure config key. The same holds for a Swarm service's
``task_spec.container_spec.env``: its secrets arrive as Swarm secrets (files under /run/secrets)."""

from __future__ import annotations

from pulumi_policy import StackValidationArgs

from policy import context, spec
from policy.props import GENERATED_SECRET_TYPES, ServiceView, is_unknown
from policy.rules._base import Report, StackRule, StackView

ID = "no-plaintext-secret-env"


def _secret_name(name: str) -> bool:
    upper = name.upper()
    return any(part in upper for part in spec.SECRET_NAME_PARTS) and not upper.endswith("_FILE")


def validate(args: StackValidationArgs, report: Report) -> None:
    ctx = context.current()
    view = StackView.of(args)
    for container in view.workloads():
        swarm = isinstance(container, ServiceView)
        service = (
            f"{container.service} (docker.Service {container.name}: task_spec.container_spec.env)"
            if swarm
            else container.service
        )
        env = container.env()
        for name, value in sorted(env.items()):
            if _secret_name(name):
                report(
                    f"{service}: {name} carries a secret in the environment; deliver it as a file "
                    + (
                        f"(a docker.Secret in container_spec.secrets and {name}_FILE=/run/secrets/…)"
                        if swarm
                        else f"({name}_FILE pointing under the secrets directory)"
                    ),
                    container.urn,
                )
            elif name.upper().endswith("_FILE") and isinstance(value, str) and not value.startswith("/"):
                report(f"{service}: {name} should name a file, not hold a value", container.urn)
            if isinstance(value, str) and not is_unknown(value):
                leaked = [s for s in ctx.secret_values if len(s) >= 6 and s in value]
                if leaked:
                    report(f"{service}: {name} contains the value of a secure config key", container.urn)
        resource = view.resource(container.urn)
        # A service's env is inside task_spec: a generated secret flowing into the task spec directly (not through a
        # docker.Secret) is taken for the environment.
        sources = resource.property_dependencies.get("taskSpec" if swarm else "envs", []) if resource else []
        for dep in sources:
            if dep.type in GENERATED_SECRET_TYPES:
                report(
                    f"{service}: the environment is computed from generated secret {dep.name}; mount it as a "
                    + ("docker.Secret file instead" if swarm else "file instead"),
                    container.urn,
                )


POLICY = StackRule(
    ID, "R-SEC-1", "no secret in container or Swarm service environment: secrets reach them as files", validate
)
