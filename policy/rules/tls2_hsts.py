"""R-TLS-2: every HTTPS response carries HSTS with max-age >= 31536000 and includeSubDomains.

nginx drops inherited ``add_header`` lines in any block that declares its own, so each location of
a TLS server is checked, not only the server.
"""

from __future__ import annotations

import re

from policy import context, nginx, spec
from policy.props import ContainerView
from policy.rules._base import Report, StackRule, for_service
from policy.rules._tls import load_or_report

ID = "tls-hsts"
_MAX_AGE = re.compile(r"max-age=(\d+)", re.IGNORECASE)


def hsts_problem(block: nginx.Block) -> str | None:
    headers = [s["args"] for s in block.effective("add_header") if s["args"]]
    values = [args[1] if len(args) > 1 else "" for args in headers if args[0].lower() == "strict-transport-security"]
    if not values:
        return "sends no Strict-Transport-Security header"
    value = values[-1]
    match = _MAX_AGE.search(value)
    if not match or int(match.group(1)) < spec.HSTS_MIN_MAX_AGE:
        return f"sends HSTS {value!r}; max-age must be at least {spec.HSTS_MIN_MAX_AGE}"
    if "includesubdomains" not in value.lower():
        return f"sends HSTS {value!r} without includeSubDomains"
    return None


def check(container: ContainerView, report: Report) -> None:
    """Runs on the nginx container or Swarm service with the files it receives (uploads or Swarm configs)."""
    if container.service != spec.PUBLIC_SERVICE:
        return
    if not context.current().is_prod:
        return  # HSTS on a developer's localhost would pin every local port to HTTPS
    config = load_or_report(container, report, required=True)
    if config is None:
        return
    for server in (s for s in config.http_servers() if s.is_tls):
        name = " ".join(a for s in server.own("server_name") for a in s["args"]) or "_"
        problem = hsts_problem(server)
        if problem:
            report(f"server {name} {problem}")
        for location in server.locations():
            if location.own("add_header") and (problem := hsts_problem(location)):
                report(
                    f"server {name} location {' '.join(location.args)} {problem} (its own add_header "
                    "lines replace the inherited ones)"
                )


POLICY = StackRule(
    ID,
    "R-TLS-2",
    "prod HSTS max-age >= 31536000 with includeSubDomains on every HTTPS response",
    for_service(spec.PUBLIC_SERVICE, check),
)
