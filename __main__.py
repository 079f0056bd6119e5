"""Fly Potato platform: load the stack's settings, build the platform, export the documented outputs."""

import pulumi

from components.platform import Platform
from components.settings import SettingsError, load_settings

try:
    settings = load_settings()
except SettingsError as error:
    # One sentence per problem, no stack trace: the user fixes config, not code.
    raise pulumi.RunError(f"stack config is invalid:\n{error}") from None

platform = Platform("fly-potato", settings)
for key, value in platform.stack_outputs().items():
    pulumi.export(key, value)
