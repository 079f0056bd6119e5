"""R-NET-3: dev publishes every port on loopback only ("do not publish DEV externally").

Mandatory in every profile, unlike the pack's other rules (advisory on dev stacks): a dev stack on a routable
address is the classic leak. The settings refuse such a bind first; this rule catches any other way there.

A Swarm service cannot publish on loopback: a host-mode port binds every address of the node running the task.
So a dev stack on a swarm publishes nothing; operators reach it through the SSH tunnel to the manager.
"""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, ResourceValidationArgs

from policy import context, spec
from policy.props import ServiceView, is_unknown
from policy.rules._base import Report, ResourceRule, workload_of

ID = "dev-bindings-loopback"


def validate(args: ResourceValidationArgs, report: Report) -> None:
    container = workload_of(args)
    if container is None or context.current().is_prod:
        return
    if isinstance(container, ServiceView):
        for binding in container.bindings():
            report(
                f"{binding.describe()} (docker.Service {container.name}) is published on every address of its "
                "nodes; dev binds 127.0.0.1 only: deploy dev with target = host, or publish nothing on the swarm "
                "and come in through the SSH tunnel"
            )
        return
    for binding in container.bindings():
        if is_unknown(binding.host_ip):
            report(f"{binding.service}: a published address is not known at preview; it must be known to be checked")
        elif not spec.is_loopback(binding.ip):
            report(f"{binding.describe()} is reachable from the network; dev binds 127.0.0.1 only")


POLICY = ResourceRule(
    ID, "R-NET-3", "dev publishes every port on 127.0.0.1 only", validate, enforcement_level=EnforcementLevel.MANDATORY
)
