"""The fly-potato policy pack: its policies and the enforcement level of the stack it runs for.

Prod stacks get mandatory rules, dev stacks advisory ones (see ``policy.context`` for how the
profile is found). Policy config overrides both, as CrossGuard does: ``pulumi preview
--policy-pack policy --policy-pack-config levels.json`` with ``{"all": "advisory"}`` or
``{"tls-hsts": "mandatory"}``. A policy with its own level keeps it unless config says otherwise:
R-SEC-4 (advisory), and R-NET-3 (dev binds loopback only), mandatory in every profile.
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import EnforcementLevel, Policy

from policy import context
from policy.rules import (
    auth1_oauth2_proxy,
    auth2_keycloak,
    net1_public_bindings,
    net2_loopback_bindings,
    net3_dev_loopback,
    net4_zones,
    net5_egress,
    net6_datalens,
    sec1_secret_env,
    sec2_hardening,
    sec3_image_digest,
    sec4_rotation_age,
    sec5_metrics_token,
    tls1_protocols_ciphers,
    tls2_hsts,
    tls4_keys_renewal,
    tls5_http_redirect,
)
from wire import PROJECT

NAME = PROJECT  # the pack is named after the project

POLICIES: list[Policy] = [
    net1_public_bindings.POLICY,
    net2_loopback_bindings.POLICY,
    net3_dev_loopback.POLICY,
    net4_zones.POLICY,
    net5_egress.POLICY,
    net6_datalens.POLICY,
    tls1_protocols_ciphers.POLICY,
    tls2_hsts.POLICY,
    tls4_keys_renewal.POLICY,
    tls5_http_redirect.POLICY,
    auth1_oauth2_proxy.POLICY,
    auth2_keycloak.POLICY,
    sec1_secret_env.POLICY,
    sec2_hardening.POLICY,
    sec3_image_digest.POLICY,
    sec4_rotation_age.POLICY,
    sec5_metrics_token.POLICY,
]


def pack_level(ctx: context.StackContext) -> EnforcementLevel:
    return EnforcementLevel.MANDATORY if ctx.is_prod else EnforcementLevel.ADVISORY


def level_of(policy: Policy, ctx: context.StackContext, config: dict[str, Any] | None = None) -> EnforcementLevel:
    """The level CrossGuard applies: policy config, else the policy's own, else the stack's."""
    config = config or {}
    for key in (policy.name, "all"):
        entry = config.get(key)
        value = entry.get("enforcementLevel") if isinstance(entry, dict) else entry
        if value:
            return EnforcementLevel(value)
    return policy.enforcement_level or pack_level(ctx)


def pack_arguments(ctx: context.StackContext | None = None) -> dict[str, Any]:
    """Keyword arguments of ``PolicyPack`` for the stack the CLI runs the pack for."""
    ctx = ctx or context.from_environment()
    return {
        "name": NAME,
        "policies": POLICIES,
        "enforcement_level": pack_level(ctx),
        "description": f"Port, TLS, auth and hardening rules of docs/requirements.md ({ctx.profile} profile)",
    }
