"""Loading nginx's TLS servers for the R-TLS rules."""

from __future__ import annotations

from pulumi_policy import ReportViolation

from policy import nginx
from policy.props import ContainerView


def load_or_report(container: ContainerView, report: ReportViolation, required: bool) -> nginx.NginxConfig | None:
    """The parsed config, or None after reporting why it cannot be checked (when ``required``)."""
    try:
        config = nginx.load(container)
    except nginx.ConfigUnavailable as error:
        if required:
            report(f"cannot check the nginx config: {error}")
        return None
    for error in config.errors:
        report(f"nginx config does not parse: {error}")
    return config
