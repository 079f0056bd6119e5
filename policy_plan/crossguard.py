"""Run the pack's policies on a recorded program graph the way CrossGuard does, without an engine.

Each resource's inputs are put back into the wire form the engine sends an analyzer (secrets wrapped,
unknowns as pulumi's sentinel), deserialized with pulumi-policy's own functions and wrapped in its
unknown-checking proxy; resource policies get ``ResourceValidationArgs``, stack policies
``StackValidationArgs`` with ``PolicyResource`` parents and dependencies resolved, and every policy's
``validate`` reports through a collecting callback. Enforcement follows ``policy.pack.level_of``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from policy import context
from policy.pack import POLICIES, level_of
from policy.props import CONTAINER, SERVICE, labels_of, plain
from policy_plan.program import PlannedResource, ProgramGraph
from wire import SERVICE_LABEL

UNKNOWN_WIRE = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


@dataclass(frozen=True)
class Violation:
    policy: str
    requirement: str
    level: str  # "mandatory" | "advisory"
    resource: str  # the service of a container, else the resource name; "(stack)" for stack-wide
    type: str
    urn: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Result:
    violations: list[Violation]
    policy_seconds: float
    not_applicable: list[tuple[str, str]]

    @property
    def mandatory(self) -> list[Violation]:
        return [v for v in self.violations if v.level == EnforcementLevel.MANDATORY.value]

    def pairs(self, level: str | None = None) -> set[tuple[str, str]]:
        return {(v.policy, v.resource) for v in self.violations if level is None or v.level == level}


def to_wire(value: Any) -> Any:
    """Recorded inputs -> the JSON shape of the engine's property struct (``MessageToDict``)."""
    if type(value).__name__ == "Unknown":
        return UNKNOWN_WIRE
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)  # protobuf numbers are doubles
    return value


def _options(resource: PlannedResource) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=False,
        ignore_changes=[],
        delete_before_replace=resource.options.get("delete_before_replace"),
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=list(resource.options.get("additional_secret_outputs", [])),
        parent=resource.parent or None,
    )


def _props(resource: PlannedResource) -> Any:
    return unknown_checking_proxy(deserialize_properties(to_wire(resource.inputs)))


def policy_props(resource: PlannedResource) -> Any:
    """The properties a policy sees for ``resource`` (pulumi-policy's proxy over deserialized inputs)."""
    return _props(resource)


def display_name(resource_type: str, name: str, props: Any) -> str:
    """A container or a Swarm service is shown as its service (the label), anything else by its name."""
    if resource_type in (CONTAINER, SERVICE):
        service = labels_of(plain(props)).get(SERVICE_LABEL)
        if isinstance(service, str):
            return service
    return name


def run(
    graph: ProgramGraph,
    ctx: context.StackContext,
    *,
    policies: Iterable[Policy] = POLICIES,
    policy_config: dict[str, Any] | None = None,
) -> Result:
    policies = list(policies)
    violations: list[Violation] = []
    not_applicable: list[tuple[str, str]] = []
    by_urn = {r.urn: r for r in graph.resources}
    props = {r.urn: _props(r) for r in graph.resources}
    names = {r.urn: display_name(r.type, r.name, props[r.urn]) for r in graph.resources}
    spent = 0.0

    def collector(policy: Policy, level: EnforcementLevel, default_urn: str, stack: bool) -> Any:
        def report(message: str, urn: str | None = None) -> None:
            target = (urn or "") if stack else default_urn
            resource = by_urn.get(target)
            violations.append(
                Violation(
                    policy=policy.name,
                    requirement=getattr(policy, "requirement", ""),
                    level=level.value,
                    resource=names.get(target, "(stack)"),
                    type=resource.type if resource else "pulumi:pulumi:Stack",
                    urn=target,
                    message=message,
                )
            )

        return report

    def call(policy: Policy, args: Any, report: Any, urn: str) -> None:
        try:
            result = policy.validate(args, report)  # type: ignore[attr-defined]
            if inspect.isawaitable(result):
                asyncio.run(_await(result))
        except UnknownValueError as error:
            # What the SDK does: an advisory note, whatever the policy's level.
            violations.append(
                Violation(
                    policy.name,
                    getattr(policy, "requirement", ""),
                    EnforcementLevel.ADVISORY.value,
                    names.get(urn, "(stack)"),
                    by_urn[urn].type if urn in by_urn else "pulumi:pulumi:Stack",
                    urn,
                    f"can't run policy during preview: {error.message}",
                )
            )
        except Exception as error:
            if type(error).__name__ == "_NotApplicableError":
                not_applicable.append((policy.name, getattr(error, "reason", "") or ""))
            else:
                raise

    with context.use(ctx):
        levels = {p.name: level_of(p, ctx, policy_config) for p in policies}
        config_of = {p.name: (policy_config or {}).get(p.name) for p in policies}
        active = [p for p in policies if levels[p.name] != EnforcementLevel.DISABLED]
        stack_resources = _stack_resources(graph, props)
        started = time.perf_counter()
        for resource in graph.resources:
            for policy in active:
                if not isinstance(policy, ResourceValidationPolicy):
                    continue
                args = ResourceValidationArgs(
                    resource.type,
                    props[resource.urn],
                    resource.urn,
                    resource.name,
                    _options(resource),
                    None,
                    _policy_properties(config_of[policy.name]),
                    {},
                )
                call(policy, args, collector(policy, _reported(levels[policy.name]), resource.urn, False), resource.urn)
        for policy in active:
            if isinstance(policy, StackValidationPolicy):
                stack_args = StackValidationArgs(stack_resources, _policy_properties(config_of[policy.name]), {})
                call(policy, stack_args, collector(policy, _reported(levels[policy.name]), "", True), "")
        spent = time.perf_counter() - started
    return Result(violations=violations, policy_seconds=spent, not_applicable=not_applicable)


def _reported(level: EnforcementLevel) -> EnforcementLevel:
    # CrossGuard reports a violation of a remediation policy as mandatory.
    return EnforcementLevel.MANDATORY if level == EnforcementLevel.REMEDIATE else level


def _policy_properties(entry: Any) -> dict[str, Any]:
    if isinstance(entry, dict):
        return {k: v for k, v in entry.items() if k != "enforcementLevel"}
    return {}


async def _await(awaitable: Any) -> None:
    await awaitable


def _stack_resources(graph: ProgramGraph, props: dict[str, Any]) -> list[PolicyResource]:
    resources = {
        r.urn: PolicyResource(r.type, props[r.urn], r.urn, r.name, _options(r), None, None, [], {})
        for r in graph.resources
    }
    for r in graph.resources:
        resource = resources[r.urn]
        resource.parent = resources.get(r.parent)
        resource.dependencies = [resources[d] for d in r.dependencies if d in resources]
        resource.property_dependencies = {
            key: [resources[d] for d in deps if d in resources] for key, deps in r.property_dependencies.items()
        }
    return list(resources.values())
