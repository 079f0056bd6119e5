"""The app zone's backend: the FastAPI service, configured from the platform's settings and secrets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi

from components.catalog import SERVICES
from components.hardened_container import (
    SECRETS_DIR,
    ContainerFile,
    HardenedContainer,
    HardenedContainerArgs,
    Healthcheck,
)
from components.network_zones import NetworkZones
from components.placement import Placement

TYPE = "fly-potato:app:AppServices"


@dataclass(frozen=True)
class AppArgs:
    """The backend's image and port, its settings as environment (plain) and files (secrets)."""

    placement: Placement
    zones: NetworkZones
    image: str
    port: int
    profile: str
    env: Mapping[str, pulumi.Input[str]]
    secret_files: Mapping[str, pulumi.Input[str]]


class AppServices(pulumi.ComponentResource):
    """The backend container. Its settings arrive as environment (plain) and files (secrets)."""

    def __init__(self, name: str, args: AppArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        port = args.port
        files = [
            ContainerFile(f"{SECRETS_DIR}/{key}", value, secret=True, mode="0400")
            for key, value in sorted(args.secret_files.items())
        ]
        file_env = {f"FLY_POTATO_{key.upper()}_FILE": f"{SECRETS_DIR}/{key}" for key in args.secret_files}
        self.backend = HardenedContainer(
            f"{name}-backend",
            HardenedContainerArgs(
                service="backend",
                image=args.image,
                env={
                    "FLY_POTATO_PROFILE": args.profile,
                    "FLY_POTATO_PORT": str(port),
                    **args.env,
                    **file_env,
                },
                files=files,
                # Binding ports below 1024 without root or capabilities (prod listens on 80).
                sysctls={"net.ipv4.ip_unprivileged_port_start": "0"} if port < 1024 else {},
                healthcheck=Healthcheck(
                    test=[
                        "CMD",
                        "python3",
                        "-c",
                        f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/healthz', timeout=3)",
                    ],
                ),
            ),
            args.placement,
            args.zones,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # As HardenedContainer.zone_url: the listener as seen from inside the Docker networks.
        self.url = f"http://{SERVICES['backend'].docker_alias}:{port}"
        self.register_outputs({"backend": self.backend.name})
