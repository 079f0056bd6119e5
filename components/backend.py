"""The app zone's backend: the FastAPI service, configured from the platform's settings and secrets."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi

from components.container import SECRETS_DIR, ContainerFile, HardenedContainer, HardenedContainerArgs, Healthcheck
from components.network import NetworkZones
from components.settings import Settings

TYPE = "fly-potato:app:AppServices"


class AppServices(pulumi.ComponentResource):
    """The backend container. Its settings arrive as environment (plain) and files (secrets)."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        zones: NetworkZones,
        *,
        env: Mapping[str, pulumi.Input[str]],
        secret_files: Mapping[str, pulumi.Input[str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        port = settings.ports["backend"]
        files = [
            ContainerFile(f"{SECRETS_DIR}/{key}", value, secret=True, mode="0400")
            for key, value in sorted(secret_files.items())
        ]
        file_env = {f"FLY_POTATO_{key.upper()}_FILE": f"{SECRETS_DIR}/{key}" for key in secret_files}
        self.backend = HardenedContainer(
            f"{name}-backend",
            HardenedContainerArgs(
                service="backend",
                image=settings.images["backend"],
                env={
                    "FLY_POTATO_PROFILE": settings.profile.value,
                    "FLY_POTATO_PORT": str(port),
                    **env,
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
            settings,
            zones,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.url = HardenedContainer.zone_url(settings, "backend", "backend")
        self.register_outputs({"backend": self.backend.name})
