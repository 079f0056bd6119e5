"""R-SEC-5: every metrics endpoint wants a bearer token that the scraper reads from a file.

- Every scrape job of Prometheus sends ``authorization: {type: Bearer, credentials_file: FILE}`` with FILE a
  secret file (0400) Prometheus receives (an upload on a host, a Swarm secret on a swarm); no job carries a
  credential inline (``credentials``, ``bearer_token``), a legacy ``bearer_token_file`` or basic auth, and none
  goes without. Its configuration is read from its uploads or its Swarm configs.
- The servers that cannot ask for the token themselves listen on loopback only, so the metrics gate in their
  container is the only way in: Keycloak's management interface (``KC_HTTP_MANAGEMENT_HOST``) and oauth2-proxy's
  metrics server (``metrics_address``).
"""

from __future__ import annotations

from typing import Any

import yaml
from pulumi_policy import StackValidationArgs

from policy import spec
from policy.props import ContainerView, flag_value, is_unknown
from policy.rules._base import Report, StackRule, StackView
from policy.rules.auth1_oauth2_proxy import options_of

ID = "metrics-bearer-token-file"
INLINE = ("credentials", "bearer_token", "bearer_token_file", "basic_auth")


def _check_jobs(prometheus: ContainerView, report: Report) -> None:
    path = flag_value(prometheus.argv(), "--config.file")
    content = prometheus.uploads().get(path) if isinstance(path, str) else None
    if is_unknown(content) or not isinstance(content, str):
        report(f"prometheus: its configuration ({path!r}) is not known at preview; it must be to be checked")
        return
    try:
        config: Any = yaml.safe_load(content)
    except yaml.YAMLError as error:
        report(f"prometheus: its configuration does not parse: {error}")
        return
    jobs = config.get("scrape_configs") if isinstance(config, dict) else None
    secret_files = prometheus.secret_files()  # uploads 0400, or Swarm secrets of file_mode 0400
    for job in jobs if isinstance(jobs, list) else []:
        name = job.get("job_name", "?") if isinstance(job, dict) else "?"
        if not isinstance(job, dict):
            report("prometheus: a scrape job is not a mapping")
            continue
        auth = job.get("authorization")
        inline = [key for key in INLINE if key in job]
        if isinstance(auth, dict) and "credentials" in auth:
            inline.append("authorization.credentials")
        if inline:
            report(f"prometheus job {name}: {', '.join(inline)} in the configuration; the token must come from a file")
        if not isinstance(auth, dict) or not auth.get("credentials_file"):
            report(f"prometheus job {name} scrapes without the metrics token (authorization.credentials_file)")
            continue
        if str(auth.get("type", "Bearer")).lower() != "bearer":
            report(f"prometheus job {name}: authorization type {auth.get('type')!r}; the metrics token is a Bearer")
        if auth["credentials_file"] not in secret_files:
            report(f"prometheus job {name}: {auth['credentials_file']} is not a secret file (0400) Prometheus receives")


def validate(args: StackValidationArgs, report: Report) -> None:
    view = StackView.of(args)
    prometheus = view.workload("prometheus")
    if prometheus is not None:
        _check_jobs(prometheus, lambda message, *_: report(message, prometheus.urn))
    keycloak = view.workload("keycloak")
    if keycloak is not None:
        host = keycloak.env().get("KC_HTTP_MANAGEMENT_HOST")
        if not (isinstance(host, str) and spec.is_loopback(host)):
            report(
                f"keycloak KC_HTTP_MANAGEMENT_HOST={host!r}: its management interface (metrics, health) has no "
                "token check; keep it on 127.0.0.1 behind the metrics gate",
                keycloak.urn,
            )
    proxy = view.workload("oauth2_proxy")
    if proxy is not None:
        address = options_of(proxy).get("metrics_address")
        if isinstance(address, str) and address and not spec.is_loopback(address.rpartition(":")[0]):
            report(
                f"oauth2-proxy metrics_address={address!r}: its metrics server has no token check; keep it on "
                "127.0.0.1 behind the metrics gate",
                proxy.urn,
            )


POLICY = StackRule(
    ID,
    "R-SEC-5",
    "every scrape job sends the bearer token from a secret file; Keycloak's and oauth2-proxy's metrics on loopback",
    validate,
)
