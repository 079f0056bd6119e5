"""R-TLS-5: in prod, port 80 only answers ``301 https://…``."""

from __future__ import annotations

from policy import context, spec
from policy.props import ContainerView
from policy.rules._base import Report, StackRule, for_service
from policy.rules._tls import load_or_report

ID = "http-redirect-only"
# Directives that do not answer requests themselves.
_INERT = frozenset(
    {"listen", "server_name", "access_log", "error_log", "server_tokens", "log_not_found", "return", "location"}
)


def _redirects(stmt: dict) -> bool:
    args = stmt["args"]
    return stmt["directive"] == "return" and len(args) == 2 and args[0] == "301" and args[1].startswith("https://")


def check(container: ContainerView, report: Report) -> None:
    """Runs on the nginx container or Swarm service with the files it receives (uploads or Swarm configs)."""
    if container.service != spec.PUBLIC_SERVICE or not context.current().is_prod:
        return
    http_ports = {b.container_port for b in container.bindings() if b.host_port == spec.PUBLIC_HTTP_PORT}
    if not http_ports:
        return  # 80 is not published
    config = load_or_report(container, report, required=True)
    if config is None:
        return
    for server in config.http_servers():
        plain_ports = {item.port for item in server.listens() if not item.ssl and item.port is not None}
        if not plain_ports & http_ports:
            continue
        name = " ".join(a for s in server.own("server_name") for a in s["args"]) or "_"
        where = f"server {name} on port {','.join(str(p) for p in sorted(plain_ports & http_ports))}"
        for stmt in server.stmts:
            if stmt["directive"] not in _INERT:
                report(f"{where} has `{stmt['directive']}`; port 80 only redirects")
            elif stmt["directive"] == "return" and not _redirects(stmt):
                report(f"{where} answers `return {' '.join(stmt['args'])}`; port 80 only answers 301 https://")
        redirects_all = any(_redirects(s) for s in server.stmts)
        for location in server.locations():
            answer = [s for s in location.stmts if s["directive"] != "location"]
            if not (len(answer) == 1 and _redirects(answer[0])):
                report(f"{where} location {' '.join(location.args)} does more than `return 301 https://…`")
        if not redirects_all and not any(loc.args == ["/"] for loc in server.locations()):
            report(f"{where} has no `return 301 https://…` for every request")


POLICY = StackRule(ID, "R-TLS-5", "port 80 only answers 301 https://… in prod", for_service(spec.PUBLIC_SERVICE, check))
