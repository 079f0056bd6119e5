"""R-NET-4: each container joins only the zones docs/requirements.md lists for it; nginx alone is in edge."""

from __future__ import annotations

from pulumi_policy import StackValidationArgs

from policy import context, spec
from policy.props import contains_unknown
from policy.rules._base import Report, StackRule, StackView
from wire import ZONES_LABEL

ID = "zone-membership"


def validate(args: StackValidationArgs, report: Report) -> None:
    ctx = context.current()
    view = StackView.of(args)
    zone_of = view.zone_of_network()
    for container in view.containers():
        service = container.service
        names = container.network_names()
        if contains_unknown(names):
            report(f"{service}: its networks are not known at preview; they must be known to be checked", container.urn)
            continue
        zones = set()
        for name in names:
            if name not in zone_of:
                report(f"{service} joins network {name!r}, which is not a zone of this stack", container.urn)
            else:
                zones.add(zone_of[name])
        for zone in sorted(zones & set(spec.NEVER_IN.get(service, ()))):
            report(f"{service} must never be in the {zone} zone", container.urn)
        for zone in sorted(zones):
            members = spec.ZONE_MEMBERS.get(zone)
            feature = spec.CONDITIONAL_MEMBERS.get((zone, service))
            if feature is not None and ctx.setting(feature):
                continue
            if members is not None and service not in members and zone not in spec.NEVER_IN.get(service, ()):
                report(f"{service} joins the {zone} zone; its members are {', '.join(sorted(members))}", container.urn)
        if "operator" in zones and not any(spec.is_loopback(b.ip) for b in container.bindings()):
            report(f"{service} joins the operator zone without an operator (loopback) binding", container.urn)
        declared = container.labels.get(ZONES_LABEL)
        if isinstance(declared, str) and set(filter(None, declared.split(","))) != zones:
            report(f"{service} is labelled with zones {declared!r} but joins {','.join(sorted(zones))}", container.urn)


POLICY = StackRule(
    ID, "R-NET-4", "containers join only their zones; nginx alone in edge; postgres never in edge or app", validate
)
