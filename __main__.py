"""Fly Potato platform: load the stack's settings, build the platform, export the documented outputs.

The Pulumi CLI runs this file as ``__main__``, which asks the deploying machine itself (its DNS resolver and
Docker limits) in the preflight; the offline plan (``policy_plan.program``) calls :func:`main` with its own.
"""

import pulumi

from components.platform import Platform
from components.preflight import SYSTEM_PROBES, HostProbes
from components.settings import SettingsError, load_settings
from components.swarm.platform import SwarmPlatform


def main(host: HostProbes = SYSTEM_PROBES) -> None:
    try:
        settings = load_settings()
    except SettingsError as error:
        # One sentence per problem, no stack trace: the user fixes config, not code.
        raise pulumi.RunError(f"stack config is invalid:\n{error}") from None
    platform: Platform | SwarmPlatform
    if settings.raw.target == "swarm":
        platform = SwarmPlatform("fly-potato", settings, host=host)
    else:
        platform = Platform("fly-potato", settings, host=host)
    for key, value in platform.stack_outputs().items():
        pulumi.export(key, value)


if __name__ == "__main__":
    main()
