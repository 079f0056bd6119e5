"""R-NET-1: in prod the only routable host bindings are nginx 443/tcp and, optionally, 80/tcp.

A routable binding of nginx on another port is allowed only for the DataLens TCP proxy, i.e. a
``stream`` server of the rendered nginx config; R-NET-6 checks that proxy's source allow-list.
"""

from __future__ import annotations

from policy import context, nginx, spec
from policy.props import ContainerView, is_unknown
from policy.rules._base import Report, StackRule, for_each_container

ID = "public-bindings-nginx-only"


def check(container: ContainerView, report: Report) -> None:
    if not context.current().is_prod:
        return
    bindings = container.bindings()
    is_nginx = container.service == spec.PUBLIC_SERVICE
    stream_ports: set[int] = set()
    if is_nginx:
        try:
            config = nginx.load(container)
            stream_ports = {item.port for server in config.stream_servers() for item in server.listens() if item.port}
        except nginx.ConfigUnavailableError:
            stream_ports = set()
    for binding in bindings:
        if is_unknown(binding.host_ip) or is_unknown(binding.host_port):
            report(f"{binding.service}: a published port is not known at preview; it must be known to be checked")
            continue
        if not spec.is_routable(binding.ip):
            continue
        allowed = (
            is_nginx
            and binding.protocol == "tcp"
            and (
                binding.host_port in (spec.PUBLIC_HTTPS_PORT, spec.PUBLIC_HTTP_PORT)
                or binding.container_port in stream_ports
            )
        )
        if not allowed:
            report(
                f"{binding.describe()} is published on a routable address; only nginx 443/tcp and 80/tcp may be "
                "(publish it as operator, i.e. on 127.0.0.1, or not at all)"
            )
    if is_nginx and not any(
        b.host_port == spec.PUBLIC_HTTPS_PORT
        and b.protocol == "tcp"
        and not is_unknown(b.host_ip)
        and spec.is_routable(b.ip)
        for b in bindings
    ):
        report("nginx does not publish 443/tcp on a routable address; prod is served over HTTPS by nginx only")


POLICY = StackRule(
    ID, "R-NET-1", "prod binds only nginx 443/tcp (and 80/tcp) on routable host addresses", for_each_container(check)
)
