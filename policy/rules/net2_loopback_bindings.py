"""R-NET-2: in prod every published port other than nginx 443/80 binds loopback (operator access).

A Swarm service cannot publish on loopback, so on swarm every other port is not published at all."""

from __future__ import annotations

from policy import context, nginx, spec
from policy.props import ContainerView, ServiceView, is_unknown
from policy.rules._base import Report, StackRule, for_each_workload

ID = "other-bindings-loopback"


def check(container: ContainerView, report: Report) -> None:
    if not context.current().is_prod:
        return
    stream_ports: set[int] = set()
    if container.service == spec.PUBLIC_SERVICE:
        try:
            config = nginx.load(container)
            stream_ports = {i.port for s in config.stream_servers() for i in s.listens() if i.port}
        except nginx.ConfigUnavailableError:
            pass
    for binding in container.bindings():
        if is_unknown(binding.host_ip) or is_unknown(binding.host_port):
            report(f"{binding.service}: a published port is not known at preview; it must be known to be checked")
            continue
        edge = (
            container.service == spec.PUBLIC_SERVICE
            and binding.protocol == "tcp"
            and (
                binding.host_port in (spec.PUBLIC_HTTPS_PORT, spec.PUBLIC_HTTP_PORT)
                or binding.container_port in stream_ports  # DataLens proxy, see R-NET-6
            )
        )
        if not edge and isinstance(container, ServiceView):
            report(
                f"{binding.describe()}: docker.Service {container.name} publishes in endpoint_spec.ports, which swarm "
                "cannot bind to 127.0.0.1; remove the publish and reach it through an SSH tunnel to a node"
            )
        elif not edge and not spec.is_loopback(binding.ip):
            report(f"{binding.describe()} must bind 127.0.0.1 (operator access) or not be published")


POLICY = StackRule(
    ID,
    "R-NET-2",
    "prod publishes every port other than nginx 443/80 on 127.0.0.1 or not at all",
    for_each_workload(check),
)
