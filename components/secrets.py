"""Generated secrets: pulumi-random values that rotate with the stack's rotation epoch (R-SEC-4)."""

from __future__ import annotations

import pulumi
import pulumi_random as random

from components.settings import Settings


def generated_password(
    name: str, settings: Settings, *, length: int = 32, parent: pulumi.Resource | None = None
) -> random.RandomPassword:
    """A URL-safe password (letters and digits only, so it embeds in DSNs and config files unquoted).

    Bumping ``fly-potato:secrets.rotation_epoch`` replaces every generated secret of the stack.
    """
    return random.RandomPassword(
        name,
        length=length,
        special=False,
        min_lower=2,
        min_upper=2,
        min_numeric=2,
        keepers={"rotation_epoch": str(settings.raw.secrets.rotation_epoch)},
        opts=pulumi.ResourceOptions(parent=parent, additional_secret_outputs=["result"]),
    )


def generated_bytes(
    name: str, settings: Settings, *, length: int = 32, parent: pulumi.Resource | None = None
) -> random.RandomBytes:
    """Random bytes (base64 in ``.base64``), e.g. the oauth2-proxy cookie secret (R-AUTH-1)."""
    return random.RandomBytes(
        name,
        length=length,
        keepers={"rotation_epoch": str(settings.raw.secrets.rotation_epoch)},
        opts=pulumi.ResourceOptions(parent=parent),
    )
