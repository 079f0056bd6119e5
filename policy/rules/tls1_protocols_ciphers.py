"""R-TLS-1: nginx serves TLS 1.2 and 1.3 only, with Mozilla "intermediate" ciphers."""

from __future__ import annotations

from policy import context, spec
from policy.props import ContainerView
from policy.rules._base import Report, StackRule, for_service
from policy.rules._tls import load_or_report

ID = "tls-protocols-ciphers"


def check(container: ContainerView, report: Report) -> None:
    """Runs on the nginx container or Swarm service with the files it receives (uploads or Swarm configs)."""
    if container.service != spec.PUBLIC_SERVICE:
        return
    prod = context.current().is_prod
    config = load_or_report(container, report, required=prod)
    if config is None:
        return
    servers = [s for s in config.http_servers() if s.is_tls]
    if prod and not servers:
        report("no server listens with `ssl`; prod serves HTTPS on 443")
    for server in servers:
        name = " ".join(a for s in server.own("server_name") for a in s["args"]) or "_"
        ports = ",".join(str(item.port) for item in server.listens() if item.ssl)
        where = f"server {name} on {ports}"
        protocols = [a for s in server.effective("ssl_protocols") for a in s["args"]]
        if not protocols:
            report(f"{where} has no ssl_protocols (nginx's default enables TLSv1 and TLSv1.1)")
        elif not set(protocols) <= spec.TLS_PROTOCOLS:
            report(f"{where} enables {' '.join(sorted(set(protocols) - spec.TLS_PROTOCOLS))}; only TLSv1.2 TLSv1.3")
        ciphers = [c for s in server.effective("ssl_ciphers") for a in s["args"] for c in a.split(":") if c]
        if not ciphers:
            report(f"{where} has no ssl_ciphers (nginx's default HIGH:!aNULL:!MD5 is not intermediate)")
        else:
            extra = [c for c in ciphers if c not in spec.INTERMEDIATE_CIPHERS]
            if extra:
                report(f"{where} allows ciphers outside Mozilla intermediate: {':'.join(extra)}")


POLICY = StackRule(
    ID, "R-TLS-1", "nginx TLS 1.2/1.3 only with Mozilla intermediate ciphers", for_service(spec.PUBLIC_SERVICE, check)
)
