"""Placement: what the stack decides for every container of the platform, and nothing else of the settings.

Names and labels (project, stack), the zones a service joins, its CPU, memory and PID limits, its host
ports and the open-files limit. :class:`~components.hardened_container.HardenedContainer` reads only this; the
``Platform`` builds it once from the settings and hands it to each group in its ``XxxArgs``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from components.catalog import SERVICES, Resources, Zone
from components.settings import PortBinding, Settings


@dataclass(frozen=True)
class Placement:
    project: str
    stack: str
    max_open_files: int
    zones: Mapping[str, Sequence[Zone]]
    resources: Mapping[str, Resources]
    bindings: Mapping[str, Sequence[PortBinding]]

    @classmethod
    def of(cls, settings: Settings) -> Placement:
        return cls(
            project=settings.project,
            stack=settings.stack,
            max_open_files=settings.raw.host.max_open_files,
            zones={name: settings.zones_of(name) for name in SERVICES},
            resources=dict(settings.resources),
            bindings={name: settings.bindings_of(name) for name in SERVICES},
        )

    def resource_name(self, *parts: str) -> str:
        """Docker object name carrying project and stack, so stacks can share a host (R-OPS-3)."""
        return "-".join((self.project, self.stack, *parts)).replace("_", "-")

    def zones_of(self, service: str) -> list[Zone]:
        return list(self.zones[service])

    def bindings_of(self, service: str) -> list[PortBinding]:
        return list(self.bindings[service])
