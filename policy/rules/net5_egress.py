"""R-NET-5: only services on the egress allow-list join the egress zone, for listed purposes only;
in prod the inner zones are internal so nothing else can reach out."""

from __future__ import annotations

from typing import Any

from pulumi_policy import StackValidationArgs

from policy import context, spec
from policy.props import NETWORK, contains_unknown, labels_of
from policy.rules._base import Report, StackRule, StackView
from wire import ZONE_LABEL

ID = "egress-allow-list"


def validate(args: StackValidationArgs, report: Report) -> None:
    ctx = context.current()
    view = StackView.of(args)
    rules: list[Any] = ctx.setting("egress", []) or []
    allowed_services: set[str] = set()
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        purpose, port = rule.get("purpose"), rule.get("port")
        protocol = rule.get("protocol", "tcp")
        ports, protocols = spec.EGRESS_PURPOSES.get(str(purpose), (frozenset(), frozenset()))
        if port not in ports or protocol not in protocols:
            report(
                f"egress[{index}]: {rule.get('service')} {purpose} on {port}/{protocol} is not on the allow-list "
                "(DNS 53, NTP 123/udp, object storage 443, SMTP 587/465, external IdP 443)"
            )
        else:
            allowed_services.add(str(rule.get("service")))
    zone_of = view.zone_of_network()
    for container in view.workloads():  # containers and Swarm services
        names = container.network_names()
        if contains_unknown(names):
            continue  # reported by R-NET-4
        if any(zone_of.get(n) == "egress" for n in names) and container.service not in allowed_services:
            report(f"{container.service} joins the egress zone without an egress allow-list entry", container.urn)
    if not ctx.is_prod:
        return
    for network in view.of_type(NETWORK):
        zone = labels_of(network.props).get(ZONE_LABEL)
        internal = network.props.get("internal")
        if zone in spec.INNER_ZONES and internal is not True:
            report(f"the {zone} zone network is not internal, so every member can reach outside", network.urn)
        if zone == "operator" and internal is not True:  # an internal network (swarm's overlay) reaches nothing
            options = network.props.get("options") or {}
            if str(options.get("com.docker.network.bridge.enable_ip_masquerade", "true")).lower() != "false":
                report(
                    "the operator zone masquerades outbound traffic; it must only accept loopback publishing",
                    network.urn,
                )


POLICY = StackRule(
    ID, "R-NET-5", "egress only for allow-listed services and purposes; prod inner zones internal", validate
)
