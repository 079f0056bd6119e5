"""ServerCertificate: the edge's TLS certificate, from a per-stack internal CA or a provided chain (R-TLS-3, R-TLS-4).

Internal CA: ECDSA P-256 keys, a CA certificate and a server certificate it signs for the stack's domain.
Both carry ``early_renewal_hours``, so the first ``pulumi up`` inside the renewal window replaces them —
well before the 14-day expiry alert — and nginx (whose files change) is recreated with the new pair.

Provided: the chain and key from stack config (the key a Pulumi secret), served as given.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

import pulumi
import pulumi_tls as tls
from pydantic import SecretStr

from components.settings import Settings

TYPE = "fly-potato:tls:ServerCertificate"

HOURS_PER_DAY = 24
# The CA outlives many server certificates; it is replaced (with a fresh server certificate) a year early.
CA_VALIDITY_DAYS = 5 * 365
CA_RENEW_BEFORE_DAYS = 365

# DER of the AccessDescription method id-ad-ocsp (1.3.6.1.5.5.7.48.1) inside Authority Information Access.
_OCSP_ACCESS_METHOD = bytes.fromhex("06082b06010505073001")
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)
_PEM_KEY = re.compile(r"-----BEGIN (EC |RSA )?PRIVATE KEY-----")


class CertificateConfigError(pulumi.RunError):
    """A provided certificate or key is unusable; the message never shows the key."""


def names_ocsp_responder(chain_pem: str) -> bool:
    """True when the first (server) certificate of the chain names an OCSP responder (R-TLS-3).

    Let's Encrypt stopped putting OCSP URLs in certificates in 2025, so stapling is configured only for
    certificates that still carry one; nginx would otherwise log a stapling error on every start.
    """
    match = _PEM_CERT.search(chain_pem)
    if not match:
        return False
    der = base64.b64decode("".join(match.group(1).split()))
    return _OCSP_ACCESS_METHOD in der


def check_provided_key(settings: Settings) -> None:
    """A provided key must be PEM. Checked here, not in the settings model, whose errors echo their input."""
    key = settings.raw.tls.private_key_pem
    if settings.raw.tls.mode == "provided" and key is not None and not _PEM_KEY.search(key.get_secret_value()):
        raise CertificateConfigError(
            "fly-potato:tls.private_key_pem is not a PEM private key (-----BEGIN PRIVATE KEY-----); set it "
            'with `pulumi config set --secret --path tls.private_key_pem -- "$(cat key.pem)"`'
        )


@dataclass(frozen=True)
class ProvidedCertificate:
    """A chain (server first) and its private key from stack config, served as given."""

    chain_pem: str
    private_key_pem: SecretStr


@dataclass(frozen=True)
class CertificateArgs:
    """The stack's domain and organization for the internal CA, its lifetimes, or a provided chain."""

    domain: str
    organization: str  # "<project> <stack>"
    validity_days: int
    renew_before_days: int
    provided: ProvidedCertificate | None = None  # None: issue from the stack's internal CA

    @property
    def ocsp_stapling(self) -> bool:
        """Whether nginx staples OCSP: only for a provided chain that names a responder."""
        return self.provided is not None and names_ocsp_responder(self.provided.chain_pem)


class ServerCertificate(pulumi.ComponentResource):
    """``cert_pem`` (chain, server first), ``private_key_pem`` (secret), ``ca_cert_pem`` (trust anchor for
    in-stack clients such as the certificate probe; None for a provided chain) and ``ocsp_stapling``."""

    cert_pem: pulumi.Output[str]
    private_key_pem: pulumi.Output[str]
    ca_cert_pem: pulumi.Output[str] | None
    ocsp_stapling: bool

    def __init__(self, name: str, args: CertificateArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        provided = args.provided
        if provided is not None:
            self.cert_pem = pulumi.Output.from_input(provided.chain_pem)
            self.private_key_pem = pulumi.Output.secret(provided.private_key_pem.get_secret_value())
            self.ca_cert_pem = None
            self.ocsp_stapling = args.ocsp_stapling
        else:
            self._issue_from_internal_ca(name, args)
        self.register_outputs({"cert_pem": self.cert_pem, "ocsp_stapling": self.ocsp_stapling})

    def _issue_from_internal_ca(self, name: str, args: CertificateArgs) -> None:
        child = pulumi.ResourceOptions(parent=self)
        organization = args.organization

        ca_key = tls.PrivateKey(f"{name}-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        ca_cert = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=ca_key.private_key_pem,
            is_ca_certificate=True,
            subject=tls.SelfSignedCertSubjectArgs(common_name=f"{organization} internal CA", organization=organization),
            validity_period_hours=CA_VALIDITY_DAYS * HOURS_PER_DAY,
            early_renewal_hours=CA_RENEW_BEFORE_DAYS * HOURS_PER_DAY,
            allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
            opts=child,
        )
        server_key = tls.PrivateKey(f"{name}-server-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        request = tls.CertRequest(
            f"{name}-server-csr",
            private_key_pem=server_key.private_key_pem,
            subject=tls.CertRequestSubjectArgs(common_name=args.domain, organization=organization),
            dns_names=[args.domain],
            opts=child,
        )
        server_cert = tls.LocallySignedCert(
            f"{name}-server",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=ca_key.private_key_pem,
            ca_cert_pem=ca_cert.cert_pem,
            validity_period_hours=args.validity_days * HOURS_PER_DAY,
            early_renewal_hours=args.renew_before_days * HOURS_PER_DAY,
            allowed_uses=["digital_signature", "server_auth"],
            opts=child,
        )
        self.ca_key, self.ca_cert, self.server_key, self.server_cert = ca_key, ca_cert, server_key, server_cert
        self.cert_pem = server_cert.cert_pem
        self.private_key_pem = pulumi.Output.secret(server_key.private_key_pem)
        self.ca_cert_pem = ca_cert.cert_pem
        self.ocsp_stapling = False  # the internal CA runs no OCSP responder
