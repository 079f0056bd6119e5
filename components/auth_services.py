"""The auth zone: Keycloak 26 under /sso and oauth2-proxy in front of the protected routes."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components import metrics_gate, oauth2_proxy
from components.hardened_container import (
    CONFIG_DIR,
    SECRETS_DIR,
    ContainerFile,
    HardenedContainer,
    HardenedContainerArgs,
    VolumeMount,
)
from components.identity_realm import IdentityArgs, IdentityRealm, RealmConfig
from components.network_zones import NetworkZones
from components.oauth2_proxy import oauth2_proxy_files
from components.placement import Placement
from components.platform_databases import KEYCLOAK_DATABASE
from components.secrets import generated_cookie_secret, generated_password
from wire import STACK_LABEL

TYPE = "fly-potato:auth:AuthServices"

KEYCLOAK_PATH = "/sso"
OIDC_CLIENT_ID = "oauth2-proxy"
KEYCLOAK_BUILD_DIR = "/opt/keycloak/lib/quarkus"  # what `kc.sh build` (and start-dev) writes
KEYCLOAK_ENTRYPOINT = "keycloak-entrypoint"  # the image's (kc.sh, --config-file after the command)

# R-SEC-5: Keycloak's management interface (metrics, health) has no authentication but mTLS, and oauth2-proxy's
# metrics server none at all. Both listen on 127.0.0.1 in their container behind the metrics gate, which wants
# the metrics token on every path; /healthz answers Keycloak's /health/ready and oauth2-proxy's /ping.
KEYCLOAK_GATE = metrics_gate.MetricsGate("keycloak", "keycloak_management", f"{KEYCLOAK_PATH}/health/ready")
OAUTH2_PROXY_GATE = metrics_gate.MetricsGate(
    "oauth2_proxy", "oauth2_proxy_metrics", "/ping", health_listener="oauth2_proxy"
)


def issuer_url(public_url: str, realm: str) -> str:
    """The realm's public issuer: what browsers see and every token's ``iss``."""
    return f"{public_url}{KEYCLOAK_PATH}/realms/{realm}"


def internal_url(http_port: int) -> str:
    """Keycloak's base in the app zone."""
    return f"http://keycloak:{http_port}{KEYCLOAK_PATH}"


def keycloak_env(
    *,
    postgres_port: int,
    http_port: int,
    management_upstream: int,
    public_url: str,
    trusted_proxies: str,
    admin_console_url: str | None,
) -> dict[str, str]:
    """Keycloak's options as environment, on a host and on a swarm alike; secrets are in its config file."""
    return {
        # Build options: must equal the image's build for `--optimized`.
        "KC_DB": "postgres",
        "KC_HEALTH_ENABLED": "true",
        "KC_METRICS_ENABLED": "true",
        "KC_HTTP_RELATIVE_PATH": KEYCLOAK_PATH,
        # Runtime options (R-AUTH-2); secrets are in the config file, never here.
        "KC_DB_URL": f"jdbc:postgresql://postgres:{postgres_port}/{KEYCLOAK_DATABASE}",
        "KC_DB_USERNAME": "keycloak",
        "KC_HTTP_ENABLED": "true",
        # `start-dev` runs Quarkus' dev profile, which binds HTTP to localhost only: nginx, oauth2-proxy, the
        # backend and the published port would all be refused.
        "KC_HTTP_HOST": "0.0.0.0",
        "KC_HTTP_PORT": str(http_port),
        # Metrics and health on loopback only; the gate answers on the management listener (R-SEC-5).
        "KC_HTTP_MANAGEMENT_HOST": "127.0.0.1",
        "KC_HTTP_MANAGEMENT_PORT": str(management_upstream),
        "KC_PROXY_HEADERS": "xforwarded",
        # Only nginx (in the app zone) may set X-Forwarded-*; anyone else could spoof the client.
        "KC_PROXY_TRUSTED_ADDRESSES": trusted_proxies,
        "KC_HOSTNAME": f"{public_url}{KEYCLOAK_PATH}",
        "KC_HOSTNAME_STRICT": "true",
        **({"KC_HOSTNAME_ADMIN": f"{admin_console_url}{KEYCLOAK_PATH}"} if admin_console_url is not None else {}),
    }


@dataclass(frozen=True)
class AuthArgs:
    """Keycloak and oauth2-proxy: images, ports, the realm, where Keycloak stands, their secrets and the
    oauth2-proxy config rendered for this realm (``render_oauth2_proxy_config``)."""

    placement: Placement
    zones: NetworkZones
    keycloak_image: str
    oauth2_proxy_image: str
    keycloak_port: int
    keycloak_management_port: int
    postgres_port: int
    oauth2_proxy_port: int
    oauth2_proxy_metrics_port: int
    oauth2_proxy_metrics_upstream: int  # oauth2-proxy's own metrics server, on loopback behind the gate
    oauth2_proxy_config: str
    realm: RealmConfig
    production: bool  # prod runs the image's optimized build; dev runs start-dev
    admin_console_url: str | None  # prod: where operators open the admin console (KC_HOSTNAME_ADMIN)
    trusted_proxies: str  # the app zone's subnet: only nginx there may set X-Forwarded-*
    keycloak_db_password: pulumi.Input[str]
    metrics_token: pulumi.Input[str]
    # The pre-deploy dump: a new Keycloak migrates its schema on start, so it starts after the dump (R-OPS-2).
    keycloak_after: Sequence[pulumi.Resource] = ()


class AuthServices(pulumi.ComponentResource):
    """Keycloak (its database on our Postgres) and oauth2-proxy (OIDC client of the stack's realm)."""

    def __init__(self, name: str, args: AuthArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        realm = args.realm
        placement = args.placement
        metrics_token = args.metrics_token
        http_port = args.keycloak_port
        management_port = args.keycloak_management_port
        # The management interface's own port, on loopback behind the gate (which answers on management_port).
        management_upstream = metrics_gate.upstream_port(management_port, http_port)

        # Keycloak creates the bootstrap admin on its first start only, so this password cannot follow the
        # rotation epoch: a new value would lock the Keycloak provider out.
        self.admin_password = random.RandomPassword(
            f"{name}-keycloak-admin",
            length=40,
            special=False,
            min_lower=2,
            min_upper=2,
            min_numeric=2,
            keepers={"applied": "at-first-start"},
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["result"]),
        )
        self.client_secret = generated_password(f"{name}-oidc-client-secret", realm.rotation_epoch, parent=self)
        self.cookie_secret = generated_cookie_secret(f"{name}-oauth2-proxy-cookie", realm.rotation_epoch, parent=self)

        self.issuer_url = issuer_url(realm.public_url, realm.realm)
        self.internal_url = internal_url(http_port)
        self.jwks_url = f"{self.internal_url}/realms/{realm.realm}/protocol/openid-connect/certs"
        self.client_id = OIDC_CLIENT_ID

        keycloak_conf = pulumi.Output.all(args.keycloak_db_password, self.admin_password.result).apply(
            lambda values: "\n".join(
                [
                    f"db-password={values[0]}",
                    f"bootstrap-admin-username={realm.admin_user}",
                    f"bootstrap-admin-password={values[1]}",
                    "",
                ]
            )
        )
        # start-dev re-augments Keycloak into lib/quarkus on every start. A volume there keeps the root
        # filesystem read-only; Docker seeds an empty volume from the image, so one volume per image.
        dev_build: list[VolumeMount] = []
        if not args.production:
            image_key = hashlib.sha256(args.keycloak_image.encode()).hexdigest()[:12]
            # A new image means a new volume. Docker volumes are replaced delete-before-replace, which stops the
            # container that mounts it first: so the volume waits for the dump too, and the old Keycloak keeps
            # running until the dump is complete.
            self.dev_build_volume = docker.Volume(
                f"{name}-keycloak-dev-build",
                name=placement.resource_name("keycloak", "build", image_key),
                labels=[docker.VolumeLabelArgs(label=STACK_LABEL, value=placement.stack)],
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.keycloak_after)),
            )
            dev_build.append(VolumeMount(self.dev_build_volume, KEYCLOAK_BUILD_DIR))
        self.keycloak = HardenedContainer(
            f"{name}-keycloak",
            HardenedContainerArgs(
                service="keycloak",
                image=args.keycloak_image,
                # Prod runs the image's build (`kc.sh build` with the KC_* build options of keycloak_env).
                entrypoint=metrics_gate.entrypoint(),
                command=[KEYCLOAK_ENTRYPOINT]
                + (["start-dev"] if not args.production else ["start", "--optimized"])
                + [f"--config-file={SECRETS_DIR}/keycloak.conf"],
                volumes=dev_build,
                env=keycloak_env(
                    postgres_port=args.postgres_port,
                    http_port=http_port,
                    management_upstream=management_upstream,
                    public_url=realm.public_url,
                    trusted_proxies=args.trusted_proxies,
                    admin_console_url=args.admin_console_url,
                ),
                files=[
                    ContainerFile(f"{SECRETS_DIR}/keycloak.conf", keycloak_conf, secret=True, mode="0400"),
                    *metrics_gate.files(KEYCLOAK_GATE, management_port, metrics_token, upstream=management_upstream),
                ],
                tmpfs={"/tmp": "rw,noexec,nosuid,size=256m", "/opt/keycloak/data": "rw,nosuid,size=256m"},
                healthcheck=metrics_gate.healthcheck(management_port, start_period="90s", retries=30),
                wait_timeout=420,
            ),
            placement,
            args.zones,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.keycloak_after)),
        )

        # The realm and the client exist before oauth2-proxy starts and discovers them.
        self.identity = IdentityRealm(
            f"{name}-identity",
            IdentityArgs(
                config=realm,
                keycloak=self.keycloak.container,
                base_path=KEYCLOAK_PATH,
                admin_password=self.admin_password.result,
                client_id=OIDC_CLIENT_ID,
                client_secret=self.client_secret.result,
            ),
            opts=child,
        )
        after_identity = pulumi.ResourceOptions(parent=self, depends_on=[self.identity])

        proxy_port = args.oauth2_proxy_port
        proxy_metrics_port = args.oauth2_proxy_metrics_port
        proxy_files = oauth2_proxy_files(
            args.oauth2_proxy_config, client_secret=self.client_secret.result, cookie_secret=self.cookie_secret.result
        )
        self.oauth2_proxy = HardenedContainer(
            f"{name}-oauth2-proxy",
            HardenedContainerArgs(
                service="oauth2_proxy",
                image=args.oauth2_proxy_image,
                entrypoint=metrics_gate.entrypoint(),
                command=[*oauth2_proxy.ENTRYPOINT, oauth2_proxy.START],
                files=[
                    *proxy_files,
                    *metrics_gate.files(
                        OAUTH2_PROXY_GATE,
                        proxy_metrics_port,
                        metrics_token,
                        upstream=args.oauth2_proxy_metrics_upstream,
                        health_port=proxy_port,
                    ),
                ],
                # The gate's /healthz is oauth2-proxy's /ping: both processes answer.
                healthcheck=metrics_gate.healthcheck(proxy_metrics_port),
            ),
            placement,
            args.zones,
            opts=after_identity,
        )
        self.register_outputs({"keycloak": self.keycloak.name, "oauth2_proxy": self.oauth2_proxy.name})


__all__ = [
    "CONFIG_DIR",
    "KEYCLOAK_GATE",
    "KEYCLOAK_PATH",
    "OAUTH2_PROXY_GATE",
    "OIDC_CLIENT_ID",
    "AuthArgs",
    "AuthServices",
    "internal_url",
    "issuer_url",
    "keycloak_env",
]
