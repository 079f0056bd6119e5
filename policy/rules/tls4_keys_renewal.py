"""R-TLS-4: certificate keys are strong and certificates renew before the 14-day expiry alert."""

from __future__ import annotations

from pulumi_policy import StackValidationArgs

from policy import context, spec
from policy.props import is_unknown
from policy.rules._base import Report, StackRule, StackView

ID = "tls-keys-renewal"
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
CERTIFICATES = ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert")


def validate(args: StackValidationArgs, report: Report) -> None:
    ctx = context.current()
    view = StackView.of(args)
    for key in view.of_type(PRIVATE_KEY):
        algorithm = key.props.get("algorithm")
        if is_unknown(algorithm):
            report(f"private key {key.name}: algorithm not known at preview", key.urn)
        elif algorithm == "RSA":
            bits = key.props.get("rsaBits", 2048)  # pulumi-tls' default
            if is_unknown(bits) or int(bits) < spec.MIN_RSA_BITS:
                report(f"private key {key.name}: RSA {bits} bits; at least {spec.MIN_RSA_BITS}", key.urn)
        elif algorithm == "ECDSA":
            curve = key.props.get("ecdsaCurve", "P224")  # pulumi-tls' default is the weak P224
            if curve not in spec.ECDSA_CURVES:
                report(f"private key {key.name}: ECDSA curve {curve}; use P256 or P384", key.urn)
        elif algorithm != "ED25519":
            report(f"private key {key.name}: algorithm {algorithm!r} is not RSA, ECDSA or ED25519", key.urn)
    certificates = [c for t in CERTIFICATES for c in view.of_type(t)]
    for cert in certificates:
        validity = cert.props.get("validityPeriodHours")
        early = cert.props.get("earlyRenewalHours")
        if is_unknown(validity) or is_unknown(early):
            report(f"certificate {cert.name}: validity or renewal window not known at preview", cert.urn)
            continue
        if not early or float(early) < spec.MIN_EARLY_RENEWAL_HOURS:
            report(
                f"certificate {cert.name}: earlyRenewalHours {early}; renew at least "
                f"{spec.MIN_EARLY_RENEWAL_HOURS} h before expiry, ahead of the {spec.EXPIRY_ALERT_DAYS}-day alert",
                cert.urn,
            )
        elif validity is not None and float(early) >= float(validity):
            report(
                f"certificate {cert.name}: earlyRenewalHours {early} >= validityPeriodHours {validity}; "
                "it would be renewed on every update",
                cert.urn,
            )
        if not cert.props.get("isCaCertificate") and validity and float(validity) > spec.MAX_LEAF_VALIDITY_HOURS:
            report(f"certificate {cert.name}: valid {validity} h; server certificates last at most 397 days", cert.urn)
    if ctx.is_prod and not certificates and ctx.setting("tls.mode", "internal_ca") != "provided":
        report("prod has no certificate resource although tls.mode is internal_ca")


POLICY = StackRule(ID, "R-TLS-4", "strong certificate keys; renewal starts before the 14-day expiry alert", validate)
