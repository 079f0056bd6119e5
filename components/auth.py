"""The auth zone: Keycloak 26 under /sso and oauth2-proxy in front of the protected routes."""

from __future__ import annotations

import pulumi

from components.container import (
    CONFIG_DIR,
    SECRETS_DIR,
    ContainerFile,
    HardenedContainer,
    HardenedContainerArgs,
    http_probe,
)
from components.network import NetworkZones
from components.secrets import generated_bytes, generated_password
from components.settings import Settings

TYPE = "fly-potato:auth:AuthServices"

KEYCLOAK_PATH = "/sso"
OIDC_CLIENT_ID = "oauth2-proxy"


class AuthServices(pulumi.ComponentResource):
    """Keycloak (its database on our Postgres) and oauth2-proxy (OIDC client of the stack's realm)."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        zones: NetworkZones,
        *,
        keycloak_db_password: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        http_port = settings.ports["keycloak"]
        management_port = settings.ports["keycloak_management"]

        self.admin_password = generated_password(f"{name}-keycloak-admin", settings, parent=self)
        self.client_secret = generated_password(f"{name}-oidc-client-secret", settings, parent=self)
        self.cookie_secret = generated_bytes(f"{name}-oauth2-proxy-cookie", settings, length=32, parent=self)

        self.issuer_url = f"{settings.public_url}{KEYCLOAK_PATH}/realms/{settings.realm}"
        self.internal_url = f"http://keycloak:{http_port}{KEYCLOAK_PATH}"
        self.jwks_url = f"{self.internal_url}/realms/{settings.realm}/protocol/openid-connect/certs"
        self.client_id = OIDC_CLIENT_ID

        keycloak_conf = pulumi.Output.all(keycloak_db_password, self.admin_password.result).apply(
            lambda values: "\n".join(
                [
                    f"db-password={values[0]}",
                    f"bootstrap-admin-username={settings.raw.keycloak.admin_user}",
                    f"bootstrap-admin-password={values[1]}",
                    "",
                ]
            )
        )
        self.keycloak = HardenedContainer(
            f"{name}-keycloak",
            HardenedContainerArgs(
                service="keycloak",
                image=settings.images["keycloak"],
                command=(["start-dev"] if not settings.is_prod else ["start", "--optimized"])
                + [f"--config-file={SECRETS_DIR}/keycloak.conf"],
                env={
                    "KC_DB": "postgres",
                    "KC_DB_URL": f"jdbc:postgresql://postgres:{settings.ports['postgres']}/keycloak",
                    "KC_DB_USERNAME": "keycloak",
                    "KC_HTTP_ENABLED": "true",
                    "KC_HTTP_PORT": str(http_port),
                    "KC_HTTP_MANAGEMENT_PORT": str(management_port),
                    "KC_HTTP_RELATIVE_PATH": KEYCLOAK_PATH,
                    "KC_PROXY_HEADERS": "xforwarded",
                    "KC_HOSTNAME": f"{settings.public_url}{KEYCLOAK_PATH}",
                    "KC_HEALTH_ENABLED": "true",
                    "KC_METRICS_ENABLED": "true",
                },
                files=[ContainerFile(f"{SECRETS_DIR}/keycloak.conf", keycloak_conf, secret=True, mode="0400")],
                tmpfs={"/tmp": "rw,noexec,nosuid,size=256m", "/opt/keycloak/data": "rw,nosuid,size=256m"},
                healthcheck=http_probe(management_port, f"{KEYCLOAK_PATH}/health/ready", start_period="90s", retries=30),
                wait_timeout=420,
            ),
            settings,
            zones,
            opts=child,
        )

        proxy_port = settings.ports["oauth2_proxy"]
        metrics_port = settings.ports["oauth2_proxy_metrics"]
        proxy_conf = pulumi.Output.all(self.client_secret.result, self.cookie_secret.base64).apply(
            lambda values: "\n".join(
                [
                    'provider = "keycloak-oidc"',
                    f'oidc_issuer_url = "{self.issuer_url}"',
                    f'client_id = "{OIDC_CLIENT_ID}"',
                    f'client_secret = "{values[0]}"',
                    f'cookie_secret = "{values[1]}"',
                    f'redirect_url = "{settings.public_url}/oauth2/callback"',
                    f'http_address = "0.0.0.0:{proxy_port}"',
                    f'metrics_address = "0.0.0.0:{metrics_port}"',
                    f"cookie_secure = {'true' if settings.is_prod else 'false'}",
                    "cookie_httponly = true",
                    'cookie_samesite = "lax"',
                    "pass_access_token = true",
                    "set_xauthrequest = true",
                    "reverse_proxy = true",
                    'email_domains = ["*"]',
                    'code_challenge_method = "S256"',
                    "",
                ]
            )
        )
        self.oauth2_proxy = HardenedContainer(
            f"{name}-oauth2-proxy",
            HardenedContainerArgs(
                service="oauth2_proxy",
                image=settings.images["oauth2_proxy"],
                command=[f"--config={SECRETS_DIR}/oauth2-proxy.cfg"],
                files=[ContainerFile(f"{SECRETS_DIR}/oauth2-proxy.cfg", proxy_conf, secret=True, mode="0400")],
                healthcheck=http_probe(proxy_port, "/ping"),
            ),
            settings,
            zones,
            opts=child,
        )
        self.register_outputs({"keycloak": self.keycloak.name, "oauth2_proxy": self.oauth2_proxy.name})


__all__ = ["CONFIG_DIR", "AuthServices", "KEYCLOAK_PATH", "OIDC_CLIENT_ID"]
