"""The edge zone: nginx, the only container that may publish on a routable address (R-NET-1, R-NET-4).

It terminates TLS with the stack's :class:`~components.server_certificate.ServerCertificate`, redirects port 80 in prod,
puts oauth2-proxy's ``auth_request`` in front of the app, exposes only Keycloak's public paths and, when
DataLens is allow-listed, proxies Postgres over TCP. Config and certificate arrive as file content.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.hardened_container import ContainerFile, HardenedContainer, HardenedContainerArgs, http_probe
from components.network_zones import NetworkZones
from components.nginx_conf import DHPARAM_PEM, EdgeLayout
from components.placement import Placement
from components.server_certificate import CertificateArgs, ServerCertificate

TYPE = "fly-potato:edge:EdgeServices"

LAYOUT = EdgeLayout()


@dataclass(frozen=True)
class EdgeArgs:
    """nginx's image, its rendered config (``render_nginx_conf`` with :data:`LAYOUT` and the certificate's
    OCSP stapling), the certificate to serve and the port its health probe asks."""

    placement: Placement
    zones: NetworkZones
    image: str
    nginx_conf: str
    certificate: CertificateArgs
    http_port: int
    redirects_http: bool  # prod: port 80 answers only the redirect to HTTPS (R-TLS-5)


class EdgeServices(pulumi.ComponentResource):
    def __init__(self, name: str, args: EdgeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.certificate = ServerCertificate(f"{name}-tls", args.certificate, opts=child)
        self.nginx_conf = args.nginx_conf
        self.nginx = HardenedContainer(
            f"{name}-nginx",
            HardenedContainerArgs(
                service="nginx",
                image=args.image,
                command=["nginx", "-e", "stderr", "-c", LAYOUT.conf, "-g", "daemon off;"],
                files=[
                    ContainerFile(LAYOUT.conf, self.nginx_conf),
                    ContainerFile(LAYOUT.certificate, self.certificate.cert_pem),
                    ContainerFile(LAYOUT.dhparam, DHPARAM_PEM),
                    ContainerFile(LAYOUT.private_key, self.certificate.private_key_pem, secret=True, mode="0400"),
                ],
                # Non-root nginx binds 80/443 through the unprivileged port range, not a capability.
                sysctls={"net.ipv4.ip_unprivileged_port_start": "0"},
                # Port 80 answers only the redirect in prod (R-TLS-5), so that is what healthy looks like.
                healthcheck=http_probe(args.http_port, "/healthz", expect="301" if args.redirects_http else "200"),
            ),
            args.placement,
            args.zones,
            opts=child,
        )
        self.register_outputs({"nginx": self.nginx.name, "ocsp_stapling": self.certificate.ocsp_stapling})
