"""Loading nginx's TLS servers for the R-TLS rules."""

from __future__ import annotations

from policy import nginx
from policy.props import ContainerView
from policy.rules._base import Report


def load_or_report(container: ContainerView, report: Report, required: bool) -> nginx.NginxConfig | None:
    """The parsed config, or None after reporting why it cannot be checked (when ``required``)."""
    try:
        config = nginx.load(container)
    except nginx.ConfigUnavailableError as error:
        if required:
            report(f"cannot check the nginx config: {error}")
        return None
    for problem in config.errors:
        report(f"nginx config does not parse: {problem}")
    return config
