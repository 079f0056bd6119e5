"""Platform: the whole Fly Potato deployment of one stack, composed from the zone and service groups."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi

from components import monitoring_config as mc
from components import outputs as keys
from components.app_services import AppArgs, AppServices
from components.auth_services import OIDC_CLIENT_ID, AuthArgs, AuthServices, internal_url, issuer_url
from components.backup_service import BackupService, BackupServiceArgs
from components.catalog import SERVICES, Group, Zone
from components.data_services import DataArgs, DataServices, archive_settings
from components.edge_services import LAYOUT, EdgeArgs, EdgeServices
from components.host_guardrails import DockerHost, GuardrailsArgs, HostGuardrails, guardrail_chains
from components.identity_realm import RealmConfig, SeededUser
from components.migration import Migration, MigrationArgs
from components.monitoring_services import MonitoringArgs, MonitoringServices, docker_socket_gid
from components.network_zones import NetworkZones, ZonesArgs
from components.nginx_conf import render_nginx_conf
from components.oauth2_proxy import metrics_upstream_port, render_oauth2_proxy_config
from components.placement import Placement
from components.platform_databases import DatabaseArgs, PlatformDatabases, pg_hba, role_specs
from components.preflight import HostProbes, require_ready
from components.release_order import (
    MigrationGate,
    MigrationGateArgs,
    PreDeployBackup,
    PreDeployBackupArgs,
    ReleaseOrder,
    SmokeCheck,
    SmokeCheckArgs,
    release_args,
    smoke_target,
)
from components.secrets import generated_password
from components.server_certificate import CertificateArgs, ProvidedCertificate
from components.settings import Settings

TYPE = "fly-potato:platform:Platform"


class Platform(pulumi.ComponentResource):
    def __init__(
        self, name: str, settings: Settings, opts: pulumi.ResourceOptions | None = None, *, host: HostProbes
    ) -> None:
        require_ready(settings, host)  # TLS key, the Docker host's limits and DNS (R-OPS-1), before the first resource
        super().__init__(TYPE, name, None, opts)
        self.settings = settings
        child = pulumi.ResourceOptions(parent=self)
        port = settings.ports["postgres"]

        self.zones = NetworkZones("zones", zones_args(settings), opts=child)
        placement = Placement.of(settings)
        # DOCKER-USER allow-lists on the Docker host first (R-NET-5, R-NET-6): they match the zones' fixed
        # subnets, so no container reaches out before they hold, and `pulumi destroy` removes them last.
        self.docker_host = DockerHost.of(settings)
        self.guardrails = HostGuardrails(
            "host-guardrails",
            GuardrailsArgs(
                host=self.docker_host,
                chains=guardrail_chains(settings),
                timeout_seconds=settings.raw.host.command_timeout_seconds,
            ),
            opts=child,
        )
        child = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[self.guardrails]))
        self.data = DataServices("data", _data_args(settings, placement, self.zones), opts=child)
        # Roles, databases and grants (R-DB-1); everything that logs in to Postgres waits for them.
        self.database = PlatformDatabases(
            "database",
            DatabaseArgs(
                roles=role_specs(settings),
                endpoint=settings.postgres_endpoint,
                connect_timeout_seconds=settings.raw.operator_endpoints.connect_timeout_seconds,
                rotation_epoch=settings.raw.secrets.rotation_epoch,
                protect=settings.is_prod,
                postgres=self.data.postgres.container,
                superuser_password=self.data.superuser_password.result,
            ),
            opts=child,
        )
        pw = self.database.passwords
        self.database_url = self.database.url("app", port=port)
        self.migrator_url = self.database.url("migrator", port=port)
        self.datalens_dsn = self.database.url("datalens", host=settings.domain, port=settings.host_ports["datalens"])
        after_postgres = pulumi.ResourceOptions(depends_on=[self.database])

        self.metrics_token = generated_password(
            "metrics-token", settings.raw.secrets.rotation_epoch, length=40, parent=self
        )
        # Release order (R-OPS-2): pre-deploy backup -> migration (exit 0) -> backend -> smoke, and the backup
        # before Keycloak too, which migrates its own schema when a new version starts (components/release_order.py).
        host_config = settings.raw.host
        self.release = ReleaseOrder("release", release_args(settings), opts=child)
        self.backup: BackupService | None = None
        self.pre_deploy_backup: PreDeployBackup | None = None
        after_backup: list[pulumi.Resource] = []
        if settings.features.backups:
            assert self.data.wal_archive_volume is not None  # archived whenever backups are on
            self.backup = BackupService(
                "backup",
                BackupServiceArgs(
                    placement=placement,
                    zones=self.zones,
                    image=settings.images["backup"],
                    metrics_port=settings.ports["backup_metrics"],
                    schedule=settings.raw.backup,
                    backup_url=self.database.url("backup", port=port),
                    metrics_token=self.metrics_token.result,
                    backup_volume=self.data.backup_volume,
                    wal_archive_volume=self.data.wal_archive_volume,
                    after=[self.database],
                    moved_from=self.data,
                ),
                opts=child,
            )
            self.pre_deploy_backup = PreDeployBackup(
                "pre-deploy-backup",
                PreDeployBackupArgs(
                    host=self.docker_host,
                    release=self.release,
                    backup=self.backup.container,
                    backend_image=settings.images["backend"],
                    timeout_seconds=host_config.backup_timeout_seconds,
                ),
                opts=child,
            )
            after_backup = [self.pre_deploy_backup.command]
        self.auth = AuthServices(
            "auth",
            _auth_args(
                settings,
                placement,
                self.zones,
                keycloak_db_password=pw["keycloak"],
                metrics_token=self.metrics_token.result,
                keycloak_after=after_backup,
            ),
            opts=pulumi.ResourceOptions.merge(child, after_postgres),
        )

        self.migration = Migration(
            "migration",
            MigrationArgs(
                placement=placement,
                zones=self.zones,
                image=settings.images["migration"],
                profile=settings.profile.value,
                migrator_url=self.migrator_url,
                after=[self.database, *after_backup],
                moved_from=self.data,
            ),
            opts=child,
        )
        self.migration_gate = MigrationGate(
            "migration-gate",
            MigrationGateArgs(
                host=self.docker_host,
                release=self.release,
                migration=self.migration.container,
                timeout_seconds=host_config.command_timeout_seconds,
            ),
            opts=child,
        )
        self.app = AppServices(
            "app",
            AppArgs(
                placement=placement,
                zones=self.zones,
                image=settings.images["backend"],
                port=settings.ports["backend"],
                profile=settings.profile.value,
                env={
                    "FLY_POTATO_PUBLIC_URL": settings.public_url,
                    "FLY_POTATO_KEYCLOAK_ISSUER_URL": self.auth.issuer_url,
                    "FLY_POTATO_KEYCLOAK_JWKS_URL": self.auth.jwks_url,
                    "FLY_POTATO_OIDC_CLIENT_ID": self.auth.client_id,
                    "FLY_POTATO_CORS_ORIGINS": ",".join(settings.cors_origins),
                    "FLY_POTATO_DATALENS_EMBED_ORIGINS": ",".join(settings.raw.datalens.embed_origins),
                },
                secret_files={"database_url": self.database_url, "metrics_token": self.metrics_token.result},
            ),
            opts=pulumi.ResourceOptions.merge(
                child,
                pulumi.ResourceOptions(depends_on=[self.migration.container.container, self.migration_gate.command]),
            ),
        )
        self.edge = EdgeServices(
            "edge",
            _edge_args(settings, placement, self.zones),
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(depends_on=[self.app.backend.container, self.auth.oauth2_proxy.container])
            ),
        )
        self.smoke = SmokeCheck(
            "smoke-check",
            SmokeCheckArgs(
                host=self.docker_host,
                release=self.release,
                backend=self.app.backend,
                nginx=self.edge.nginx,
                ca_cert_pem=self.edge.certificate.ca_cert_pem,
                target=smoke_target(settings),
                timeout_seconds=host_config.smoke_timeout_seconds,
            ),
            opts=child,
        )
        self.monitoring = (
            MonitoringServices(
                "monitoring",
                _monitoring_args(
                    settings,
                    placement,
                    self.zones,
                    metrics_token=self.metrics_token.result,
                    exporter_password=pw["exporter"],
                    internal_ca_pem=self.edge.certificate.ca_cert_pem,
                    sql_exporter_after=[self.migration_gate.command],
                ),
                opts=pulumi.ResourceOptions.merge(child, after_postgres),
            )
            if settings.features.monitoring
            else None
        )
        self.register_outputs({})

    def stack_outputs(self) -> dict[str, Any]:
        """The documented stack outputs (see components/outputs.py)."""
        s = self.settings
        return {
            keys.PROFILE: s.profile.value,
            keys.PUBLIC_URL: s.public_url,
            keys.PORT_MATRIX: [
                row.model_dump(exclude={"listener"}) | {"listener": row.listener} for row in s.port_matrix()
            ],
            keys.ZONES: {
                zone.value: {
                    "network": self.zones.networks[zone].name,
                    "internal": s.zone_internal[zone],
                    "services": sorted(name for name in _services(s) if zone in s.zones_of(name)),
                }
                for zone in Zone
            },
            keys.INTERNAL_URLS: {
                "backend": self.app.url,
                "keycloak": self.auth.internal_url,
                "oauth2_proxy": f"http://oauth2-proxy:{s.ports['oauth2_proxy']}",
                "postgres": f"postgres://postgres:{s.ports['postgres']}",
                "prometheus": f"http://prometheus:{s.ports['prometheus']}",
                "alertmanager": f"http://alertmanager:{s.ports['alertmanager']}",
            },
            keys.DATABASE_URL: self.database_url,
            keys.MIGRATOR_URL: self.migrator_url,
            keys.DATALENS_DSN: self.datalens_dsn,
            keys.KEYCLOAK_ISSUER_URL: self.auth.issuer_url,
            keys.KEYCLOAK_JWKS_URL: self.auth.jwks_url,
            keys.OIDC_CLIENT_ID: self.auth.client_id,
            keys.OIDC_CLIENT_SECRET: pulumi.Output.secret(self.auth.client_secret.result),
            keys.KEYCLOAK_ADMIN: pulumi.Output.secret(
                {"username": s.raw.keycloak.admin_user, "password": self.auth.admin_password.result}
            ),
            keys.KEYCLOAK_TEST_USERS: self.auth.identity.test_users_output(),
            keys.CORS_ORIGINS: s.cors_origins,
            keys.DATALENS_EMBED_ORIGINS: list(s.raw.datalens.embed_origins),
        }


def zones_args(settings: Settings) -> ZonesArgs:
    return ZonesArgs(
        project=settings.project,
        stack=settings.stack,
        internal=dict(settings.zone_internal),
        subnets=settings.zone_subnets,
        gateways={zone: settings.zone_gateway(zone) for zone in Zone},
    )


def _data_args(settings: Settings, placement: Placement, zones: NetworkZones) -> DataArgs:
    return DataArgs(
        placement=placement,
        zones=zones,
        image=settings.images["postgres"],
        port=settings.ports["postgres"],
        pg_hba=pg_hba(settings),
        archive_conf=archive_settings(settings) if settings.features.backups else None,
        retain_volumes=settings.is_prod,
    )


def _auth_args(
    settings: Settings,
    placement: Placement,
    zones: NetworkZones,
    *,
    keycloak_db_password: pulumi.Input[str],
    metrics_token: pulumi.Input[str],
    keycloak_after: Sequence[pulumi.Resource] = (),
) -> AuthArgs:
    ports, keycloak = settings.ports, settings.raw.keycloak
    return AuthArgs(
        placement=placement,
        zones=zones,
        keycloak_image=settings.images["keycloak"],
        oauth2_proxy_image=settings.images["oauth2_proxy"],
        keycloak_port=ports["keycloak"],
        keycloak_management_port=ports["keycloak_management"],
        postgres_port=ports["postgres"],
        oauth2_proxy_port=ports["oauth2_proxy"],
        oauth2_proxy_metrics_port=ports["oauth2_proxy_metrics"],
        oauth2_proxy_metrics_upstream=metrics_upstream_port(settings),
        oauth2_proxy_config=render_oauth2_proxy_config(
            settings,
            issuer_url=issuer_url(settings.public_url, settings.realm),
            keycloak_internal_url=internal_url(ports["keycloak"]),
            client_id=OIDC_CLIENT_ID,
        ),
        realm=realm_config(settings),
        production=settings.is_prod,
        admin_console_url=(keycloak.admin_url or settings.keycloak_operator_url) if settings.is_prod else None,
        trusted_proxies=settings.zone_subnets[Zone.APP],
        keycloak_db_password=keycloak_db_password,
        metrics_token=metrics_token,
        keycloak_after=tuple(keycloak_after),
    )


def realm_config(settings: Settings) -> RealmConfig:
    keycloak = settings.raw.keycloak
    return RealmConfig(
        realm=settings.realm,
        public_url=settings.public_url,
        operator_url=settings.keycloak_operator_url,
        admin_user=keycloak.admin_user,
        client_timeout_seconds=settings.raw.operator_endpoints.connect_timeout_seconds * 4,
        access_token_minutes=keycloak.access_token_minutes,
        session_idle_minutes=keycloak.session_idle_minutes,
        session_max_hours=keycloak.session_max_hours,
        groups=keycloak.all_groups,
        groups_full_path=keycloak.groups_full_path,
        users=[SeededUser(u.username, list(u.groups)) for u in keycloak.users] if settings.seed_test_users else [],
        protect=settings.is_prod,
        rotation_epoch=settings.raw.secrets.rotation_epoch,
    )


def _monitoring_args(
    settings: Settings,
    placement: Placement,
    zones: NetworkZones,
    *,
    metrics_token: pulumi.Input[str],
    exporter_password: pulumi.Input[str],
    internal_ca_pem: pulumi.Input[str] | None,
    sql_exporter_after: Sequence[pulumi.Resource] = (),
) -> MonitoringArgs:
    paths, alerting = mc.PATHS, settings.raw.alerting
    if settings.raw.tls.mode == "internal_ca" and internal_ca_pem is None:
        raise ValueError("the certificate probe of an internal-CA stack needs the CA certificate (R-TLS-4)")
    am_secret = mc.alertmanager_config_is_secret(settings)
    am_config = paths.alertmanager_secret_config if am_secret else paths.alertmanager_config
    services = [name for name, service in SERVICES.items() if service.group is Group.MONITORING]
    return MonitoringArgs(
        placement=placement,
        zones=zones,
        images={name: settings.images[name] for name in services},
        ports={name: settings.ports[name] for name in [*services, "postgres"]},
        prometheus_argv=mc.prometheus_argv(settings, paths),
        prometheus_config=mc.render_prometheus_config(settings, paths),
        rules=mc.render_rules(settings),
        alertmanager_argv=mc.alertmanager_argv(settings, am_config),
        alertmanager_config_file=am_config,
        alertmanager_config=mc.render_alertmanager_config(settings, paths),
        alertmanager_config_is_secret=am_secret,
        smtp_password=alerting.smtp_password if alerting.email_to else None,
        warn_no_receiver=settings.is_prod and not alerting.email_to and alerting.webhook_url is None,
        blackbox_config=mc.render_blackbox_config(settings, paths),
        internal_ca_pem=internal_ca_pem if settings.raw.tls.mode == "internal_ca" else None,
        sql_exporter_config=pulumi.Output.from_input(exporter_password).apply(
            lambda password: mc.render_sql_exporter_config(settings, mc.sql_exporter_dsn(settings, password))
        ),
        exporter_password=exporter_password,
        metrics_token=metrics_token,
        docker_socket=settings.raw.monitoring.docker_socket,
        docker_socket_gid=docker_socket_gid(settings),
        retain_volumes=settings.is_prod,
        sql_exporter_after=sql_exporter_after,
    )


def _edge_args(settings: Settings, placement: Placement, zones: NetworkZones) -> EdgeArgs:
    certificate = certificate_args(settings)
    return EdgeArgs(
        placement=placement,
        zones=zones,
        image=settings.images["nginx"],
        nginx_conf=render_nginx_conf(settings, ocsp_stapling=certificate.ocsp_stapling, layout=LAYOUT),
        certificate=certificate,
        http_port=settings.ports["nginx_http"],
        redirects_http=settings.is_prod,
    )


def certificate_args(settings: Settings) -> CertificateArgs:
    """The certificate the stack's ``tls`` settings ask for."""
    config = settings.raw.tls
    provided = None
    if config.mode == "provided":
        assert config.certificate_pem and config.private_key_pem  # checked when the settings were loaded
        provided = ProvidedCertificate(config.certificate_pem, config.private_key_pem)
    return CertificateArgs(
        domain=settings.domain,
        organization=f"{settings.project} {settings.stack}",
        validity_days=config.validity_days,
        renew_before_days=config.renew_before_days,
        provided=provided,
    )


def _services(settings: Settings) -> list[str]:
    skip = set()
    if not settings.features.monitoring:
        skip |= {name for name, service in SERVICES.items() if service.group is Group.MONITORING}
    if not settings.features.backups:
        skip.add("backup")
    return [name for name in SERVICES if name not in skip]
