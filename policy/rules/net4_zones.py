"""R-NET-4: each container joins only the zones docs/requirements.md lists for it; nginx alone is in edge.

A Swarm service is held to the same through ``task_spec.networks_advanced``, and its zones must be overlay
networks (the inner ones internal: R-NET-5 checks that for every zone network). When the networks are given by
id (never a name, and unknown at preview), the zone networks the task spec depends on stand for them. On a swarm
the operator zone is an internal overlay that only the services with an operator listener (postgres, keycloak)
join: operators reach them through the operator proxy on the manager's loopback, over an SSH tunnel."""

from __future__ import annotations

from typing import Any

from pulumi_policy import StackValidationArgs

from policy import context, spec
from policy.props import NETWORK, UNKNOWN, ServiceView, contains_unknown
from policy.rules._base import Report, StackRule, StackView
from wire import ZONES_LABEL

ID = "zone-membership"


def _service_networks(view: StackView, service: ServiceView) -> list[Any]:
    """The names of the networks a service joins: as given when they name the stack's networks, else (network ids,
    unknown at preview and never names) the networks its task spec depends on; UNKNOWN where neither tells."""
    names = service.network_names()
    known = {r.props.get("name") for r in view.of_type(NETWORK)}
    if not contains_unknown(names) and all(name in known for name in names):
        return names
    resource = view.resource(service.urn)
    deps = resource.property_dependencies.get("taskSpec", []) if resource else []
    found = [d.props.get("name") for d in deps if d.type == NETWORK]
    if len(found) >= len(names) and not contains_unknown(found):
        return found
    return [UNKNOWN] if contains_unknown(names) else names


def validate(args: StackValidationArgs, report: Report) -> None:
    ctx = context.current()
    view = StackView.of(args)
    zone_of = view.zone_of_network()
    networks = {r.props.get("name"): r for r in view.of_type(NETWORK)}
    for container in view.workloads():
        service = container.service
        swarm = isinstance(container, ServiceView)
        if isinstance(container, ServiceView):
            who = f"{service} (docker.Service {container.name}: task_spec.networks_advanced)"
            names = _service_networks(view, container)
        else:
            who, names = service, container.network_names()
        if contains_unknown(names):
            report(f"{who}: its networks are not known at preview; they must be known to be checked", container.urn)
            continue
        zones = set()
        for name in names:
            if name not in zone_of:
                report(f"{who} joins network {name!r}, which is not a zone of this stack", container.urn)
            else:
                zones.add(zone_of[name])
            network = networks.get(name)
            if swarm and network is not None and network.props.get("driver") != "overlay":
                driver = network.props.get("driver") or "bridge"
                report(
                    f"{who} joins {name!r}, a {driver} network; swarm zones are overlay networks (driver='overlay')",
                    container.urn,
                )
        for zone in sorted(zones & set(spec.NEVER_IN.get(service, ()))):
            report(f"{who} must never be in the {zone} zone", container.urn)
        for zone in sorted(zones):
            members = spec.ZONE_MEMBERS.get(zone)
            feature = spec.CONDITIONAL_MEMBERS.get((zone, service))
            if feature is not None and ctx.setting(feature):
                continue
            if members is not None and service not in members and zone not in spec.NEVER_IN.get(service, ()):
                report(f"{who} joins the {zone} zone; its members are {', '.join(sorted(members))}", container.urn)
        if "operator" in zones:
            if swarm:
                operator = [networks.get(n) for n in names if zone_of.get(n) == "operator"]
                if service not in spec.OPERATOR_SERVICES:
                    report(
                        f"{who} joins the operator zone; on swarm only {', '.join(spec.OPERATOR_SERVICES)} do "
                        "(reached through the operator proxy over an SSH tunnel)",
                        container.urn,
                    )
                if any(n is not None and n.props.get("internal") is not True for n in operator):
                    report(f"{who} joins an operator overlay that is not internal; make it internal", container.urn)
            elif not any(spec.is_loopback(b.ip) for b in container.bindings()):
                report(f"{who} joins the operator zone without an operator (loopback) binding", container.urn)
        declared = container.labels.get(ZONES_LABEL)
        if isinstance(declared, str) and set(filter(None, declared.split(","))) != zones:
            report(f"{who} is labelled with zones {declared!r} but joins {','.join(sorted(zones))}", container.urn)


POLICY = StackRule(
    ID,
    "R-NET-4",
    "containers and Swarm services join only their zones (overlays on swarm); nginx alone in edge; postgres never "
    "in edge or app",
    validate,
)
