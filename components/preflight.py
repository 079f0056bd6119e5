"""Deploy preflight, before the program declares a single resource: the provided TLS key is usable, a local
Docker daemon can grant ``host.max_open_files`` and every service's CPU limit, and (R-OPS-1) in prod the
domain resolves — to ``public_address`` when one is given — or the deploy stops with a sentence saying
what to fix. Both targets run it (``Platform`` and ``SwarmPlatform``); a swarm stack's Docker daemons are the
nodes', never this machine's, so it skips the Docker limits (:func:`local_docker_daemon`).

Switched by ``fly-potato:features.dns_preflight`` (default: on in prod), e.g. off for air-gapped test stacks.
What the preflight asks the deploying machine (its DNS resolver, the Docker daemon's limits) comes in as
:class:`HostProbes`: the program's entry point passes :data:`SYSTEM_PROBES`, the offline plan and the tests
their own.
"""

from __future__ import annotations

import concurrent.futures
import os
import resource
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pulumi

from components.host_guardrails import DockerHost
from components.server_certificate import check_provided_key
from components.settings import Settings
from wire import PROJECT

LOOKUP_TIMEOUT_SECONDS = 10.0


class PreflightError(pulumi.RunError):
    """The deploy must not start; the message is one sentence naming the setting and the fix."""


def system_resolver(name: str) -> set[str]:
    """Addresses the host's resolver returns for ``name`` (A and AAAA); empty when it does not resolve."""
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        return set()
    return {str(info[4][0]) for info in infos}


def check_dns(settings: Settings, resolve: Callable[[str], set[str]]) -> None:
    """Raise :class:`PreflightError` unless the domain resolves (to ``public_address`` when set)."""
    domain, expected = settings.domain, settings.raw.public_address
    off = f"set {PROJECT}:features.dns_preflight = false only for an air-gapped test stack"
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(resolve, domain)
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


DOCKER_PIDFILE = Path("/var/run/docker.pid")


def docker_nofile_hard_limit(pidfile: Path = DOCKER_PIDFILE) -> int | None:
    """The local Docker daemon's hard open-files limit (what its containers can get at most), if readable.

    Read from the daemon's ``/proc/PID/limits``; without a readable daemon, this process' own hard limit,
    which a daemon started from the same session shares. None when unlimited.
    """
    try:
        limits = Path(f"/proc/{int(pidfile.read_text().strip())}/limits").read_text()
    except (OSError, ValueError):
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        return None if hard == resource.RLIM_INFINITY else hard
    for line in limits.splitlines():
        if line.startswith("Max open files"):
            value = line.split()[4]
            return None if value == "unlimited" else int(value)
    return None


def check_open_files(settings: Settings, hard_limit: int | None) -> None:
    """Raise :class:`PreflightError` when the services' open-files limit exceeds what Docker can grant."""
    wanted = settings.raw.host.max_open_files
    if hard_limit is not None and wanted > hard_limit:
        raise PreflightError(
            f"{PROJECT}:host.max_open_files = {wanted} exceeds the Docker daemon's hard open-files limit "
            f"{hard_limit}, so no container could start; set it to at most {hard_limit}, or raise the daemon's "
            "limit (LimitNOFILE of docker.service)"
        )


def host_cpus() -> int:
    """CPUs the local Docker daemon can hand out (what it checks a container's ``cpus`` against)."""
    return len(os.sched_getaffinity(0))


def check_cpus(settings: Settings, available: int) -> None:
    """Raise :class:`PreflightError` when a service's CPU limit exceeds the Docker host's CPUs: Docker refuses
    to create such a container, half-way through ``pulumi up``."""
    over = {name: r.cpus for name, r in sorted(settings.resources.items()) if r.cpus > available}
    if over:
        keys = ", ".join(f"{PROJECT}:resources.{name}.cpus = {cpus:g}" for name, cpus in over.items())
        raise PreflightError(
            f"{keys} exceeds the {available} CPUs of the Docker host, so Docker would refuse to create the "
            f"container; set it to at most {available}, or deploy on a host with more CPUs"
        )


@dataclass(frozen=True)
class HostProbes:
    """What the preflight asks the machine that deploys."""

    resolve: Callable[[str], set[str]]  # a DNS name -> its addresses (empty when it does not resolve)
    nofile_hard_limit: Callable[[], int | None]  # the Docker daemon's hard open-files limit, None if unlimited
    cpus: Callable[[], int]  # CPUs the Docker daemon can hand out


SYSTEM_PROBES = HostProbes(resolve=system_resolver, nofile_hard_limit=docker_nofile_hard_limit, cpus=host_cpus)


def local_docker_daemon(settings: Settings) -> bool:
    """Whether the stack's containers run on this machine's Docker daemon, so its limits can be probed here.

    A host stack without ``host.ssh`` or an ``ssh://`` ``docker:host``: yes. A swarm stack: never. Its tasks run
    on the nodes behind the manager's API (``swarm.docker_host``), which ``DockerHost.of`` does not read (it
    sees a swarm stack as local), and a swarm service has no open-files limit to grant."""
    return settings.raw.target != "swarm" and not DockerHost.of(settings).is_remote


def require_ready(settings: Settings, host: HostProbes) -> None:
    """The program's preflight, on either target: runs before any resource is declared."""
    check_provided_key(settings)
    if local_docker_daemon(settings):
        check_open_files(settings, host.nofile_hard_limit())
        check_cpus(settings, host.cpus())
    if settings.dns_preflight:
        check_dns(settings, host.resolve)
