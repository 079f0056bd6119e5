"""Deploy preflight, before the program declares a single resource: the provided TLS key is usable, and
(R-OPS-1) in prod the domain resolves — to ``public_address`` when one is given — or the deploy stops with
a sentence saying what to fix.

Switched by ``fly-potato:features.dns_preflight`` (default: on in prod), e.g. off for air-gapped test stacks.
Under the unit-test mocks there is no deployment to protect and no network to ask, so the check is skipped
unless a test turns ``CHECK_UNDER_MOCKS`` on with a stub resolver.
"""

from __future__ import annotations

import concurrent.futures
import socket
from collections.abc import Callable

import pulumi

from components.settings import PROJECT, Settings
from components.tls import check_provided_key

LOOKUP_TIMEOUT_SECONDS = 10.0
CHECK_UNDER_MOCKS = False


class PreflightError(pulumi.RunError):
    """The deploy must not start; the message is one sentence naming the setting and the fix."""


def system_resolver(name: str) -> set[str]:
    """Addresses the host's resolver returns for ``name`` (A and AAAA); empty when it does not resolve."""
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        return set()
    return {str(info[4][0]) for info in infos}


resolve_host: Callable[[str], set[str]] = system_resolver


def check_dns(settings: Settings, resolve: Callable[[str], set[str]] | None = None) -> None:
    """Raise :class:`PreflightError` unless the domain resolves (to ``public_address`` when set)."""
    lookup = resolve or resolve_host
    domain, expected = settings.domain, settings.raw.public_address
    off = f"set {PROJECT}:features.dns_preflight = false only for an air-gapped test stack"
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(lookup, domain)
        try:
            addresses = future.result(timeout=LOOKUP_TIMEOUT_SECONDS)
        except concurrent.futures.TimeoutError:
            raise PreflightError(
                f"{PROJECT}:domain = {domain} did not resolve within {LOOKUP_TIMEOUT_SECONDS:g} s; check this "
                f"machine's DNS resolver and retry, or {off} (R-OPS-1)"
            ) from None
    if not addresses:
        target = f" pointing at {expected}" if expected else " pointing at this server"
        raise PreflightError(
            f"{PROJECT}:domain = {domain} does not resolve; create its DNS A record{target} and wait for it "
            f"to propagate before deploying, or {off} (R-OPS-1)"
        )
    if expected and expected not in addresses:
        raise PreflightError(
            f"{PROJECT}:domain = {domain} resolves to {', '.join(sorted(addresses))}, not to "
            f"{PROJECT}:public_address = {expected}; fix the DNS record (or public_address) before deploying, "
            f"or {off} (R-OPS-1)"
        )


def _under_mocks() -> bool:
    from pulumi.runtime import mocks
    from pulumi.runtime import settings as runtime_settings

    return isinstance(runtime_settings.get_monitor(), mocks.MockMonitor)


def require_ready(settings: Settings) -> None:
    """The program's preflight: runs before any resource is declared."""
    check_provided_key(settings)
    if not settings.dns_preflight:
        return
    if _under_mocks() and not CHECK_UNDER_MOCKS:
        return
    check_dns(settings)
