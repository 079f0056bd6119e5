"""R-NET-1: in prod the only routable host bindings are nginx 443/tcp and, optionally, 80/tcp.

A routable binding of nginx on another port is allowed only for the DataLens TCP proxy, i.e. a
``stream`` server of the rendered nginx config; R-NET-6 checks that proxy's source allow-list.

On a swarm (``docker.Service``) a publish cannot bind an address: it is on every address of the node (host mode)
or of every node (ingress mode, the routing mesh). So there the only publishes allowed are nginx's 443/tcp and
80/tcp in host mode, with nginx constrained to the nodes labelled ``fly-potato.role=edge``; nothing else is
published at all (operators reach postgres or keycloak through an SSH tunnel).
"""

from __future__ import annotations

from policy import context, nginx, spec
from policy.props import ContainerView, ServiceView, contains_unknown, is_unknown
from policy.rules._base import Report, StackRule, for_each_workload

ID = "public-bindings-nginx-only"
EDGE_CONSTRAINT = "node.labels.fly-potato.role==edge"


def _constraint(text: str) -> str:
    return "".join(text.split())


def check_service(service: ServiceView, report: Report) -> None:
    """A Swarm service: only nginx publishes, 443/80 tcp in host mode, on the edge nodes only."""
    s, is_nginx = service.service, service.service == spec.PUBLIC_SERVICE
    bindings = service.bindings()
    for binding in bindings:
        if is_unknown(binding.host_port) or is_unknown(binding.mode):
            report(
                f"{s}: endpoint_spec.ports has a published port not known at preview; it must be known to be checked"
            )
            continue
        where = f"{s} (docker.Service {service.name}): endpoint_spec.ports publishes {binding.describe()}"
        if not is_nginx:
            report(
                f"{where} on every address of a swarm node; on swarm only nginx publishes: remove the publish "
                "(operators reach postgres or keycloak through an SSH tunnel to a node, never a publish)"
            )
            continue
        if binding.protocol != "tcp" or binding.host_port not in (spec.PUBLIC_HTTPS_PORT, spec.PUBLIC_HTTP_PORT):
            report(f"{where}; nginx publishes only 443/tcp and 80/tcp: remove that publish")
        elif binding.mode != "host":
            report(
                f"{where}; the routing mesh publishes on every node of the swarm (and needs IPVS): set "
                "publish_mode='host' and keep nginx on the edge nodes"
            )
    if not is_nginx or not bindings:
        if is_nginx and context.current().is_prod:
            report(
                f"{s} (docker.Service {service.name}) publishes nothing; prod is served over HTTPS by nginx on 443/tcp"
            )
        return
    constraints = service.constraints()
    if contains_unknown(constraints):
        report(f"{s}: task_spec.placement.constraints are not known at preview; they must be known to be checked")
    elif EDGE_CONSTRAINT not in {_constraint(str(c)) for c in constraints}:
        report(
            f"{s} (docker.Service {service.name}) publishes on the nodes it runs on but task_spec.placement."
            f"constraints lacks {EDGE_CONSTRAINT!r}: constrain it to the edge nodes"
        )
    if context.current().is_prod and not any(
        b.host_port == spec.PUBLIC_HTTPS_PORT and b.protocol == "tcp" and b.mode == "host" for b in bindings
    ):
        report(f"{s} (docker.Service {service.name}) does not publish 443/tcp in host mode; prod is served over HTTPS")


def check(container: ContainerView, report: Report) -> None:
    if isinstance(container, ServiceView):
        check_service(container, report)
        return
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
    ID,
    "R-NET-1",
    "prod binds only nginx 443/tcp (and 80/tcp) on routable host addresses; on swarm only nginx publishes, "
    "in host mode on the edge nodes",
    for_each_workload(check),
)
