"""R-AUTH-1: oauth2-proxy in prod sets cookie-secure, cookie-httponly, cookie-samesite=lax,
pass-access-token and reverse-proxy, with a cookie secret of 32 random bytes.

Options come from the command line (which wins) and the TOML file named by ``--config``.
"""

from __future__ import annotations

import base64
import binascii
import re
import tomllib
from typing import Any

from pulumi_policy import StackValidationArgs

from policy import context, spec
from policy.props import SWARM_SECRET, UNKNOWN, ContainerView, flag_value, is_unknown
from policy.rules._base import Report, StackResource, StackRule, StackView

ID = "oauth2-proxy-flags"
SERVICE = "oauth2_proxy"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"  # noqa: S105 (a type token)
# base64url text of 32 bytes: 43 characters (components.secrets.COOKIE_SECRET_LENGTH).
COOKIE_SECRET_CHARS = 43
COOKIE_FROM_FILE = re.compile(r"OAUTH2_PROXY_COOKIE_SECRET=\$\(cat (\S+)\)")


def options_of(container: ContainerView) -> dict[str, Any]:
    """Effective options: config file, overridden by command-line flags. UNKNOWN for an unknown file."""
    options: dict[str, Any] = {}
    command = container.argv()
    path = flag_value(command, "--config")
    if isinstance(path, str):
        content = container.uploads().get(path)
        if is_unknown(content):
            options["__file_unknown__"] = True
        elif isinstance(content, str):
            try:
                options.update(tomllib.loads(content))
            except tomllib.TOMLDecodeError as error:
                options["__file_error__"] = str(error)
    for index, arg in enumerate(command):
        if isinstance(arg, str):
            # `OAUTH2_PROXY_COOKIE_SECRET="$(cat FILE)" exec oauth2-proxy ...`: the secret is read from FILE.
            match = COOKIE_FROM_FILE.fullmatch(arg)
            if match:
                options["cookie_secret_file"] = match.group(1)
                continue
        if not isinstance(arg, str) or not arg.startswith("--") or arg.startswith("--config"):
            continue
        name, has_value, value = arg[2:].partition("=")
        key = name.replace("-", "_")
        if has_value:
            options[key] = _typed(value)
        elif (
            index + 1 < len(command) and isinstance(command[index + 1], str) and not command[index + 1].startswith("-")
        ):
            options[key] = _typed(command[index + 1])
        else:
            options[key] = True
    return options


def _typed(value: str) -> Any:
    return {"true": True, "false": False}.get(value.lower(), value)


def _decoded_length(secret: str) -> int:
    for decode in (base64.urlsafe_b64decode, base64.b64decode):
        try:
            return len(decode(secret + "=" * (-len(secret) % 4)))
        except (binascii.Error, ValueError):
            continue
    return len(secret.encode())


def _generated_32_bytes(resource: StackResource) -> bool:
    """The resource carrying the secret file depends on a RandomPassword of 43 letters and digits: directly (a files
    container's uploads), or through the Swarm secret holding the file (a Swarm service's task spec)."""
    deps = [dep for deps in resource.property_dependencies.values() for dep in deps]
    deps += [
        inner
        for dep in deps
        if dep.type == SWARM_SECRET
        for inners in dep.property_dependencies.values()
        for inner in inners
    ]
    return any(
        dep.type == RANDOM_PASSWORD
        and dep.props.get("length") == COOKIE_SECRET_CHARS
        and dep.props.get("special") is False
        for dep in deps
    )


def validate(args: StackValidationArgs, report: Report) -> None:
    if not context.current().is_prod:
        return
    view = StackView.of(args)
    container = view.workload(SERVICE)  # a container, or a Swarm service (its files are Swarm configs and secrets)
    if container is None:
        return
    # The secret files (and so the secrets' provenance) are inputs of the files container; of a Swarm service, the
    # Swarm secrets its task spec references (their content is never read: the provenance decides).
    files = view.files_container(SERVICE)
    resource = view.resource(files.urn if files is not None else container.urn)
    options = options_of(container)
    if "__file_error__" in options:
        report(f"oauth2-proxy config does not parse as TOML: {options['__file_error__']}", container.urn)
    file_unknown = options.get("__file_unknown__", False)
    for key, wanted in spec.OAUTH2_PROXY_REQUIRED.items():
        value = options.get(key, UNKNOWN if file_unknown else None)
        flag = "--" + key.replace("_", "-")
        if is_unknown(value):
            report(
                f"{flag} is not known at preview (its config file is rendered in apply()); pass it on the "
                "command line or in a file rendered from settings",
                container.urn,
            )
        elif value != wanted:
            report(f"{flag} is {value!r}; prod needs {wanted!r}", container.urn)
    secret = options.get("cookie_secret")
    secret_file = options.get("cookie_secret_file")
    if isinstance(secret_file, str):
        secret = container.uploads().get(secret_file, secret)
    if isinstance(secret, str) and not is_unknown(secret):
        if _decoded_length(secret.strip()) != spec.COOKIE_SECRET_BYTES:
            report("the cookie secret is not 32 bytes", container.urn)
    elif secret is None and not file_unknown:
        report("no cookie secret is configured", container.urn)
    elif resource is None or not _generated_32_bytes(resource):
        report(
            "the cookie secret is not known at preview and does not come from a RandomPassword of 43 letters and "
            "digits (base64url of 32 bytes)",
            container.urn,
        )


POLICY = StackRule(
    ID,
    "R-AUTH-1",
    "oauth2-proxy secure/httponly/lax cookies, pass-access-token, reverse-proxy, 32-byte cookie secret (prod)",
    validate,
)
