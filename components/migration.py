"""The one-shot ``alembic upgrade head``, run with the backend image as the migrator role (R-DB-1, R-OPS-2).

It waits for the roles (``components.platform_databases``) and the pre-deploy backup; the release's migration gate
(``components.release_order``) turns its exit code into the verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from components.hardened_container import SECRETS_DIR, ContainerFile, HardenedContainer, HardenedContainerArgs
from components.network_zones import NetworkZones
from components.placement import Placement

TYPE = "fly-potato:data:Migration"
# The container's resource name from when the data zone owned it; kept, so deployed stacks keep the container.
CONTAINER = "data-migration"


@dataclass(frozen=True)
class MigrationArgs:
    placement: Placement
    zones: NetworkZones
    image: str
    profile: str
    migrator_url: pulumi.Input[str]
    after: Sequence[pulumi.Resource] = ()  # the roles, the pre-deploy backup
    # The component that owned the container before (the data zone): an alias, so nothing is replaced.
    moved_from: pulumi.Resource | None = None


class Migration(pulumi.ComponentResource):
    def __init__(self, name: str, args: MigrationArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        self.container = HardenedContainer(
            CONTAINER,
            HardenedContainerArgs(
                service="migration",
                image=args.image,
                command=["alembic", "upgrade", "head"],
                env={
                    "FLY_POTATO_PROFILE": args.profile,
                    "FLY_POTATO_MIGRATOR_URL_FILE": f"{SECRETS_DIR}/migrator_url",
                },
                files=[ContainerFile(f"{SECRETS_DIR}/migrator_url", args.migrator_url, secret=True, mode="0400")],
                healthcheck=None,
                one_shot=True,
            ),
            args.placement,
            args.zones,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(args.after),
                aliases=[pulumi.Alias(parent=args.moved_from)] if args.moved_from is not None else None,
            ),
        )
        self.register_outputs({"container": self.container.name})
