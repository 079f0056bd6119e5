"""The edge's nginx.conf, rendered from ``templates/nginx.conf.j2`` (R-TLS-1…3, R-TLS-5, R-AUTH-2, R-NET-6).

Rendering is a pure function of the settings, so the unit tests and the real-nginx tests (tests/edge) check
the same text the container receives; only file paths, listen address and upstream hosts differ there,
through :class:`EdgeLayout`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from components.catalog import SERVICES
from components.hardened_container import CONFIG_DIR
from components.settings import Settings

TEMPLATES = Path(__file__).resolve().parent / "templates"
DHPARAM_PEM = (TEMPLATES / "ffdhe2048.pem").read_text()

# Mozilla "intermediate" (guidelines 5.7, the profile sslyze checks against): TLS 1.2 ciphers; TLS 1.3
# uses OpenSSL's defaults, which are exactly Mozilla's three suites.
MOZILLA_INTERMEDIATE_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-CHACHA20-POLY1305",
    ]
)
MOZILLA_INTERMEDIATE_CURVES = "X25519:prime256v1:secp384r1"

# Docker's embedded DNS server: upstream names resolve per request, so nginx starts before its upstreams.
DOCKER_RESOLVER = "127.0.0.11"


@dataclass(frozen=True)
class EdgeLayout:
    """Where nginx finds its files and upstreams. The default is the container; tests move it."""

    root: str = CONFIG_DIR
    temp_dir: str = "/tmp"  # tmpfs in the container (read-only root filesystem)
    access_log: str = "/dev/stdout"
    error_log: str = "stderr"
    stream_module: str = "/usr/lib/nginx/modules/ngx_stream_module.so"
    listen_address: str | None = None  # None: every address of the container
    resolver: str | None = DOCKER_RESOLVER
    upstream_hosts: Mapping[str, str] = field(default_factory=dict)  # service -> host, instead of its DNS alias

    @property
    def conf(self) -> str:
        return f"{self.root}/nginx.conf"

    @property
    def certificate(self) -> str:
        return f"{self.root}/tls/server-chain.pem"

    @property
    def private_key(self) -> str:
        return f"{self.root}/secrets/server.key"

    @property
    def dhparam(self) -> str:
        return f"{self.root}/tls/ffdhe2048.pem"

    @property
    def pid(self) -> str:
        return f"{self.temp_dir}/nginx.pid"

    def host(self, service: str) -> str:
        return self.upstream_hosts.get(service, SERVICES[service].docker_alias)


def content_security_policy(settings: Settings) -> str:
    """CSP for the app's pages and API: same origin, plus the DataLens origins for embeds (R-APP-3)."""
    embeds = list(settings.raw.datalens.embed_origins)
    directives: dict[str, list[str]] = {
        "default-src": ["'self'"],
        "base-uri": ["'self'"],
        "object-src": ["'none'"],
        "img-src": ["'self'", "data:"],
        "form-action": ["'self'"],
        "frame-src": ["'self'", *embeds],
        "frame-ancestors": ["'self'", *embeds],
    }
    for directive, sources in settings.raw.edge.csp_extra.items():
        directives.setdefault(directive, ["'self'"])
        directives[directive] += [s for s in sources if s not in directives[directive]]
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 -- nginx syntax, not HTML; every value is validated by the settings
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_nginx_conf(settings: Settings, *, ocsp_stapling: bool = False, layout: EdgeLayout | None = None) -> str:
    layout = layout or EdgeLayout()
    ports, host_ports, edge = settings.ports, settings.host_ports, settings.raw.edge
    https_host_port = host_ports["nginx_https"]
    http_host_port = host_ports["nginx_http"]
    return (
        _environment()
        .get_template("nginx.conf.j2")
        .render(
            stack=settings.stack,
            profile=settings.profile.value,
            prod=settings.is_prod,
            domain=settings.domain,
            realm=settings.realm,
            layout=layout,
            http_port=ports["nginx_http"],
            https_port=ports["nginx_https"],
            # Where browsers reach the edge, for the redirect and X-Forwarded-Port.
            https_public_port=https_host_port,
            https_suffix="" if https_host_port == 443 else f":{https_host_port}",
            http_public_port=http_host_port,
            ciphers=MOZILLA_INTERMEDIATE_CIPHERS,
            curves=MOZILLA_INTERMEDIATE_CURVES,
            ocsp_stapling=ocsp_stapling,
            hsts_max_age=edge.hsts_max_age,
            csp=content_security_policy(settings),
            edge=edge,
            upstream={
                "backend": f"http://{layout.host('backend')}:{ports['backend']}",
                "oauth2_proxy": f"http://{layout.host('oauth2_proxy')}:{ports['oauth2_proxy']}",
                "keycloak": f"http://{layout.host('keycloak')}:{ports['keycloak']}",
                "postgres": f"{layout.host('postgres')}:{ports['postgres']}",
            },
            datalens=settings.datalens_enabled,
            datalens_port=ports["datalens"],
            datalens_allow_list=list(settings.raw.datalens.allow_list),
        )
    )
