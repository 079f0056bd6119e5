"""Generated secrets: pulumi-random values that rotate with the stack's rotation epoch (R-SEC-4)."""

from __future__ import annotations

import pulumi
import pulumi_random as random


def generated_password(
    name: str, rotation_epoch: int, *, length: int = 32, parent: pulumi.Resource | None = None
) -> random.RandomPassword:
    """A URL-safe password (letters and digits only, so it embeds in DSNs and config files unquoted).

    ``rotation_epoch`` is the stack's ``fly-potato:secrets.rotation_epoch``: bumping it replaces every generated
    secret of the stack.
    """
    return random.RandomPassword(
        name,
        length=length,
        special=False,
        min_lower=2,
        min_upper=2,
        min_numeric=2,
        keepers={"rotation_epoch": str(rotation_epoch)},
        opts=pulumi.ResourceOptions(parent=parent, additional_secret_outputs=["result"]),
    )


# 43 base64url characters decode to 32 bytes (oauth2-proxy's AES-256 cookie key, R-AUTH-1).
COOKIE_SECRET_LENGTH = 43


def generated_cookie_secret(
    name: str, rotation_epoch: int, *, parent: pulumi.Resource | None = None
) -> random.RandomPassword:
    """The oauth2-proxy cookie secret: 43 letters and digits, i.e. base64url text of 32 bytes, as oauth2-proxy
    decodes it (256 bits of entropy).

    A RandomPassword, not a RandomBytes: pulumi-random uses a RandomBytes' value as its resource ID, and IDs
    are stored in plaintext in the state (R-SEC-1).
    """
    return random.RandomPassword(
        name,
        length=COOKIE_SECRET_LENGTH,
        special=False,
        keepers={"rotation_epoch": str(rotation_epoch)},
        opts=pulumi.ResourceOptions(parent=parent, additional_secret_outputs=["result"]),
    )
