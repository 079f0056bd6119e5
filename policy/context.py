"""The stack a policy runs for: its name, profile (dev or prod) and config.

Under the engine, the Pulumi CLI starts the pack with PULUMI_STACK and the stack's config in the
environment; the offline plan sets the context explicitly with :func:`use`. The profile is the
``fly-potato:profile`` config key; without it, a stack named ``dev*``/``local*`` is dev and every
other stack is treated as prod, so an unknown stack gets the stricter rules.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from wire import PROJECT

DEV_STACK_PREFIXES = ("dev", "local")


@dataclass(frozen=True)
class StackContext:
    stack: str
    profile: str
    config: Mapping[str, Any] = field(default_factory=dict)  # project keys without the prefix, decoded
    secret_values: frozenset[str] = frozenset()  # values of secure config keys
    today: date = field(default_factory=date.today)

    @property
    def is_prod(self) -> bool:
        return self.profile == "prod"

    def setting(self, dotted: str, default: Any = None) -> Any:
        """A config value by dotted path (``datalens.allow_list``), or ``default``."""
        value: Any = self.config
        for part in dotted.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return default
            value = value[part]
        return value


def decode(value: Any) -> Any:
    """Structured config arrives as JSON text, scalars as text."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def profile_for(stack: str, config: Mapping[str, Any]) -> str:
    declared = config.get("profile")
    if declared in ("dev", "prod"):
        return str(declared)
    return "dev" if stack.lower().startswith(DEV_STACK_PREFIXES) else "prod"


def make(
    stack: str, config: Mapping[str, Any], *, secret_keys: frozenset[str] = frozenset(), today: date | None = None
) -> StackContext:
    decoded = {key: decode(value) for key, value in config.items()}
    secrets = frozenset(str(decoded[k]) for k in secret_keys if decoded.get(k))
    return StackContext(
        stack=stack,
        profile=profile_for(stack, decoded),
        config=decoded,
        secret_values=secrets,
        today=today or date.today(),
    )


def from_environment() -> StackContext:
    """The context the Pulumi CLI gives a policy pack: PULUMI_STACK and PULUMI_CONFIG."""
    stack = os.environ.get("PULUMI_STACK", "")
    raw: dict[str, Any] = {}
    try:
        raw = json.loads(os.environ.get("PULUMI_CONFIG", "") or "{}")
    except json.JSONDecodeError:
        raw = {}
    secret_keys: list[str] = []
    try:
        secret_keys = json.loads(os.environ.get("PULUMI_CONFIG_SECRET_KEYS", "") or "[]")
    except json.JSONDecodeError:
        secret_keys = []
    prefix = f"{PROJECT}:"
    config = {k.removeprefix(prefix): v for k, v in raw.items() if k.startswith(prefix)}
    secrets = frozenset(k.removeprefix(prefix) for k in secret_keys if k.startswith(prefix))
    return make(stack, config, secret_keys=secrets)


_current: StackContext | None = None


def current() -> StackContext:
    """The context set by :func:`use`, else the one from the engine's environment."""
    return _current if _current is not None else from_environment()


@contextmanager
def use(context: StackContext) -> Iterator[StackContext]:
    global _current
    previous, _current = _current, context
    try:
        yield context
    finally:
        _current = previous
