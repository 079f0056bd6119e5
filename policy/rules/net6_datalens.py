"""R-NET-6: DataLens reaches Postgres only through nginx's stream proxy, only from the allow-listed
source CIDRs (never 0.0.0.0/0), and only when the allow-list is non-empty."""

from __future__ import annotations

import ipaddress

from policy import context, nginx, spec
from policy.props import ContainerView
from policy.rules._base import Report, StackRule, for_service

ID = "datalens-exposure"


def _is_everything(value: str) -> bool:
    if value == "all":
        return True
    try:
        return ipaddress.ip_network(value, strict=False).prefixlen == 0
    except ValueError:
        return False


def check(container: ContainerView, report: Report) -> None:
    """Runs on the nginx container or Swarm service with the files it receives (uploads or Swarm configs)."""
    if container.service != spec.PUBLIC_SERVICE:
        return
    ctx = context.current()
    try:
        config = nginx.load(container)
    except nginx.ConfigUnavailableError as error:
        extra = [b for b in container.bindings() if b.host_port not in (spec.PUBLIC_HTTPS_PORT, spec.PUBLIC_HTTP_PORT)]
        if extra:
            report(f"cannot check the DataLens proxy: {error}")
        return
    allow_list = {str(ipaddress.ip_network(c, strict=False)) for c in ctx.setting("datalens.allow_list", []) or []}
    for server in config.stream_servers():
        target = " ".join(s["args"][0] for s in server.own("proxy_pass") if s["args"])
        ports = ",".join(str(i.port) for i in server.listens())
        rules = server.effective_many("allow", "deny")
        allows = [s["args"][0] for s in rules if s["directive"] == "allow" and s["args"]]
        where = f"stream server on {ports or '?'} -> {target or '?'}"
        if not allow_list:
            report(f"{where} is configured while datalens.allow_list is empty; DataLens access is off unless listed")
        if not allows:
            report(f"{where} has no `allow` rule for DataLens' source ranges")
        for value in allows:
            if _is_everything(value):
                report(f"{where} allows {value}; list DataLens' published source ranges instead")
        if not rules or rules[-1]["directive"] != "deny" or rules[-1]["args"][:1] != ["all"]:
            report(f"{where} does not end its access rules with `deny all`")
        granted = set()
        for value in allows:
            try:
                granted.add(str(ipaddress.ip_network(value, strict=False)))
            except ValueError:
                continue
        if allow_list and granted - allow_list:
            report(f"{where} allows {', '.join(sorted(granted - allow_list))}, not on datalens.allow_list")


POLICY = StackRule(
    ID,
    "R-NET-6",
    "DataLens reaches Postgres only via nginx stream from allow-listed CIDRs, never 0.0.0.0/0",
    for_service(spec.PUBLIC_SERVICE, check),
)
