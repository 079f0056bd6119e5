"""SwarmPlatform: the platform of one stack on a Docker Swarm (``target: swarm``), the same catalog and zones.

After the preflight (as on a host), the groups in release order, through the manager's API (``swarm.docker_host``):

1. zones: overlay networks (``SwarmZones``), the operator zone an internal overlay only postgres, keycloak and
   the operator proxy join;
2. data: PostGIS as one task on the node of the data role, its volume created on that node;
3. the operator proxy on the manager (``OperatorProxy``): the providers' way in, over an SSH tunnel;
4. roles, databases and grants (``PlatformDatabases``) through it;
5. with backups on, the backup service and the pre-deploy dump (``SwarmBackups``), again on a new release or Keycloak;
6. auth: Keycloak after that dump (its optimized build; a new version migrates its schema on start) and, after the
   realm (``IdentityRealm``) exists, oauth2-proxy with ``swarm.replicas`` tasks;
7. the one-shot migration, after the dump, as a container on the manager in the data overlay, and its gate;
8. the backend, ``swarm.replicas`` tasks, after the gate; nginx on the edge nodes, 443/80 in host mode;
9. with ``features.monitoring``, Prometheus, Alertmanager and the exporters (``SwarmMonitoring``) after the roles.

Each service is a ``HardenedService``: rolling updates start the new task first and roll back on a failed
healthcheck, which is the swarm's own release safety (the host's smoke step has no single address to ask).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_docker as docker

from components import metrics_gate, oauth2_proxy
from components import outputs as keys
from components.auth_services import (
    KEYCLOAK_ENTRYPOINT,
    KEYCLOAK_GATE,
    KEYCLOAK_PATH,
    OAUTH2_PROXY_GATE,
    OIDC_CLIENT_ID,
    internal_url,
    issuer_url,
)
from components.catalog import SERVICES, Zone
from components.data_services import PG_HBA_FILE, PGDATA_MOUNT
from components.edge_services import LAYOUT
from components.hardened_container import (
    SECRETS_DIR,
    ContainerFile,
    HardenedContainer,
    HardenedContainerArgs,
    Healthcheck,
    http_probe,
)
from components.host_guardrails import DockerHost
from components.identity_realm import IdentityArgs, IdentityRealm
from components.nginx_conf import DHPARAM_PEM, render_nginx_conf
from components.oauth2_proxy import metrics_upstream_port, oauth2_proxy_files, render_oauth2_proxy_config
from components.platform import certificate_args, realm_config
from components.platform_databases import DatabaseArgs, PlatformDatabases, pg_hba, role_specs
from components.preflight import HostProbes, require_ready
from components.release_order import MigrationGate, MigrationGateArgs, ReleaseOrder, release_args
from components.secrets import generated_cookie_secret, generated_password
from components.server_certificate import ServerCertificate
from components.settings import Settings
from components.swarm.backups import NO_ARCHIVE, BackupVolumes, SwarmBackups, backup_volumes_args, swarm_backups_args
from components.swarm.files import ServiceFile
from components.swarm.monitoring import SwarmMonitoring, internal_urls, swarm_monitoring_args
from components.swarm.operator_proxy import OperatorProxy, OperatorProxyArgs, proxy_address
from components.swarm.placement import manager_provider, placement_of
from components.swarm.ports import edge_ports, operator_forwards, port_matrix
from components.swarm.service import HardenedService, HardenedServiceArgs, Probe
from components.swarm.specs import (
    backend_env,
    deployed_services,
    keycloak_admin_password,
    keycloak_env,
    manager_placement,
    probe,
    service_files,
    superuser_password,
    swarm_zones_args,
    swarm_zones_of,
    tmpfs_bytes,
)
from components.swarm.zones import SwarmZones
from wire import STACK_LABEL

TYPE = "fly-potato:swarm:SwarmPlatform"


class SwarmPlatform(pulumi.ComponentResource):
    def __init__(
        self, name: str, settings: Settings, opts: pulumi.ResourceOptions | None = None, *, host: HostProbes
    ) -> None:
        require_ready(settings, host)  # as on a host (TLS key, DNS: R-OPS-1), without this machine's Docker limits
        super().__init__(TYPE, name, None, opts)
        self.settings = s = settings
        swarm = s.raw.swarm
        ports, host_ports, keycloak = s.ports, s.host_ports, s.raw.keycloak
        self.provider = manager_provider(s)
        on_swarm = pulumi.ResourceOptions(parent=self, providers=[self.provider])
        data_provider = (
            docker.Provider("swarm-data-node", host=swarm.data_docker_host, opts=pulumi.ResourceOptions(parent=self))
            if swarm.data_docker_host and swarm.data_docker_host != swarm.docker_host
            else self.provider
        )

        self.zones = SwarmZones("zones", swarm_zones_args(s), opts=on_swarm)
        operator_address = proxy_address(s.zone_subnets[Zone.OPERATOR])

        def service(key: str, **kwargs: Any) -> HardenedServiceArgs:
            where = placement_of(swarm, key)
            return HardenedServiceArgs(
                project=s.project,
                stack=s.stack,
                service=key,
                resources=s.resources[key],
                zones=swarm_zones_of(s, key),
                replicas=where.replicas,
                constraints=where.constraints,
                max_replicas_per_node=where.max_replicas_per_node,
                **kwargs,
            )

        # 2. PostGIS, on its node's volume (kept when the stack lets go of it in prod).
        self.superuser_password = superuser_password(self)
        self.data_volume = docker.Volume(
            "data-pgdata",
            name=f"{s.project}-{s.stack}-pgdata",
            labels=[docker.VolumeLabelArgs(label=STACK_LABEL, value=s.stack)],
            opts=pulumi.ResourceOptions(parent=self, provider=data_provider, retain_on_delete=s.is_prod),
        )
        # With backups on, the backup and WAL archive volumes on the data node; postgres archives into one.
        self.backup_volumes = (
            BackupVolumes(
                "backup-volumes", backup_volumes_args(s, data_provider), opts=pulumi.ResourceOptions(parent=self)
            )
            if s.features.backups
            else None
        )
        archive = self.backup_volumes.postgres if self.backup_volumes else NO_ARCHIVE
        pg_port = ports["postgres"]
        self.postgres = HardenedService(
            "data-postgres",
            service(
                "postgres",
                image=s.images["postgres"],
                env={
                    "PGPORT": str(pg_port),
                    "PGDATA": f"{PGDATA_MOUNT}/pgdata",
                    "POSTGRES_PASSWORD_FILE": f"{SECRETS_DIR}/postgres_password",
                    "POSTGRES_HBA_FILE": PG_HBA_FILE,
                },
                files=(
                    ServiceFile(
                        f"{SECRETS_DIR}/postgres_password", self.superuser_password.result, secret=True, mode=0o400
                    ),
                    ServiceFile(
                        PG_HBA_FILE,
                        pg_hba(s, operator_source=operator_address, zones_of=lambda key: swarm_zones_of(s, key)),
                    ),
                    *archive.files,
                ),
                volumes={self.data_volume.name: PGDATA_MOUNT, **archive.volumes},
                tmpfs={"/tmp": tmpfs_bytes(64), "/run/postgresql": tmpfs_bytes(16)},
                healthcheck=Probe(
                    ["CMD", "pg_isready", "--host=127.0.0.1", f"--port={pg_port}", "--timeout=3"],
                    start_period="30s",
                ),
                stop_grace_period="1m",
            ),
            self.zones,
            opts=pulumi.ResourceOptions.merge(
                on_swarm, pulumi.ResourceOptions(depends_on=[self.data_volume, *archive.after])
            ),
        )

        # 3. The providers' way in: 127.0.0.1 of the manager, over an SSH tunnel.
        self.operator_proxy = OperatorProxy(
            "operator-proxy",
            OperatorProxyArgs(
                project=s.project,
                stack=s.stack,
                image=s.images["nginx"],
                operator_subnet=s.zone_subnets[Zone.OPERATOR],
                forwards=operator_forwards(s),
            ),
            self.zones,
            opts=on_swarm,
        )

        # 4. Roles, databases and grants (R-DB-1).
        self.database = PlatformDatabases(
            "database",
            DatabaseArgs(
                roles=role_specs(s),
                endpoint=s.postgres_endpoint,
                connect_timeout_seconds=s.raw.operator_endpoints.connect_timeout_seconds,
                rotation_epoch=s.raw.secrets.rotation_epoch,
                protect=s.is_prod,
                postgres=self.postgres.service,
                superuser_password=self.superuser_password.result,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.operator_proxy]),
        )
        pw = self.database.passwords
        self.database_url = self.database.url("app", port=pg_port)
        self.migrator_url = self.database.url("migrator", port=pg_port)
        self.datalens_dsn = self.database.url("datalens", host=s.domain, port=host_ports["datalens"])
        after_roles = pulumi.ResourceOptions.merge(on_swarm, pulumi.ResourceOptions(depends_on=[self.database]))

        self.metrics_token = generated_password("metrics-token", s.raw.secrets.rotation_epoch, length=40, parent=self)
        # 5. Release step 1 (R-OPS-2): with backups on, the backup service and a dump in it, before the migration and
        # before Keycloak, which migrates its own schema when a new version starts.
        self.release = ReleaseOrder("release", release_args(s), opts=pulumi.ResourceOptions(parent=self))
        self.backups = (
            SwarmBackups(
                "backup",
                swarm_backups_args(
                    s,
                    volumes=self.backup_volumes,
                    release=self.release,
                    backup_url=self.database.url("backup", port=pg_port),
                    metrics_token=self.metrics_token.result,
                    after=[self.database],
                ),
                self.zones,
                opts=on_swarm,
            )
            if self.backup_volumes
            else None
        )
        after_dump: list[pulumi.Resource] = self.backups.after if self.backups else []
        # 6. Keycloak (after the dump), its realm, oauth2-proxy.
        self.admin_password = keycloak_admin_password(self)
        epoch = s.raw.secrets.rotation_epoch
        self.client_secret = generated_password("auth-oidc-client-secret", epoch, parent=self)
        self.cookie_secret = generated_cookie_secret("auth-oauth2-proxy-cookie", epoch, parent=self)
        kc_port, kc_management = ports["keycloak"], ports["keycloak_management"]
        kc_upstream = metrics_gate.upstream_port(kc_management, kc_port)
        keycloak_conf = pulumi.Output.all(pw["keycloak"], self.admin_password.result).apply(
            lambda values: (
                f"db-password={values[0]}\nbootstrap-admin-username={keycloak.admin_user}\n"
                f"bootstrap-admin-password={values[1]}\n"
            )
        )
        self.issuer_url = issuer_url(s.public_url, s.realm)
        self.keycloak_internal_url = internal_url(kc_port)
        self.jwks_url = f"{self.keycloak_internal_url}/realms/{s.realm}/protocol/openid-connect/certs"
        self.keycloak = HardenedService(
            "auth-keycloak",
            service(
                "keycloak",
                image=s.images["keycloak"],
                command=metrics_gate.entrypoint(),
                args=[KEYCLOAK_ENTRYPOINT, "start", "--optimized", f"--config-file={SECRETS_DIR}/keycloak.conf"],
                env=keycloak_env(s, kc_port, kc_upstream),
                files=service_files(
                    [
                        ContainerFile(f"{SECRETS_DIR}/keycloak.conf", keycloak_conf, secret=True, mode="0400"),
                        *metrics_gate.files(
                            KEYCLOAK_GATE, kc_management, self.metrics_token.result, upstream=kc_upstream
                        ),
                    ]
                ),
                tmpfs={"/tmp": tmpfs_bytes(256), "/opt/keycloak/data": tmpfs_bytes(256)},
                healthcheck=probe(metrics_gate.healthcheck(kc_management, start_period="3m", retries=30)),
                converge_timeout="10m",
                update_monitor="1m",
            ),
            self.zones,
            opts=pulumi.ResourceOptions.merge(after_roles, pulumi.ResourceOptions(depends_on=after_dump)),
        )
        self.identity = IdentityRealm(
            "auth-identity",
            IdentityArgs(
                config=realm_config(s),
                keycloak=self.keycloak.service,
                base_path=KEYCLOAK_PATH,
                admin_password=self.admin_password.result,
                client_id=OIDC_CLIENT_ID,
                client_secret=self.client_secret.result,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.operator_proxy]),
        )
        proxy_port, proxy_metrics = ports["oauth2_proxy"], ports["oauth2_proxy_metrics"]
        self.oauth2_proxy = HardenedService(
            "auth-oauth2-proxy",
            service(
                "oauth2_proxy",
                image=s.images["oauth2_proxy"],
                command=metrics_gate.entrypoint(),
                args=[*oauth2_proxy.ENTRYPOINT, oauth2_proxy.START],
                files=service_files(
                    [
                        *oauth2_proxy_files(
                            render_oauth2_proxy_config(
                                s,
                                issuer_url=self.issuer_url,
                                keycloak_internal_url=self.keycloak_internal_url,
                                client_id=OIDC_CLIENT_ID,
                            ),
                            client_secret=self.client_secret.result,
                            cookie_secret=self.cookie_secret.result,
                        ),
                        *metrics_gate.files(
                            OAUTH2_PROXY_GATE,
                            proxy_metrics,
                            self.metrics_token.result,
                            upstream=metrics_upstream_port(s),
                            health_port=proxy_port,
                        ),
                    ]
                ),
                healthcheck=probe(metrics_gate.healthcheck(proxy_metrics)),
            ),
            self.zones,
            opts=pulumi.ResourceOptions.merge(on_swarm, pulumi.ResourceOptions(depends_on=[self.identity])),
        )

        # 7. The migration, once per release, as a container on the manager in the data overlay; its gate.
        self.migration_image = docker.RemoteImage(
            "migration-image", name=s.images["migration"], keep_locally=True, opts=on_swarm
        )
        self.migration = HardenedContainer(
            "migration",
            HardenedContainerArgs(
                service="migration",
                image=s.images["migration"],  # by digest, as the manager pulled it (migration-image)
                command=["alembic", "upgrade", "head"],
                env={
                    "FLY_POTATO_PROFILE": s.profile.value,
                    "FLY_POTATO_MIGRATOR_URL_FILE": f"{SECRETS_DIR}/migrator_url",
                },
                files=[ContainerFile(f"{SECRETS_DIR}/migrator_url", self.migrator_url, secret=True, mode="0400")],
                healthcheck=None,
                one_shot=True,
            ),
            manager_placement(s),
            self.zones,
            opts=pulumi.ResourceOptions.merge(
                on_swarm,
                pulumi.ResourceOptions(depends_on=[self.database, self.migration_image, *after_dump]),
            ),
        )
        self.migration_gate = MigrationGate(
            "migration-gate",
            MigrationGateArgs(
                host=DockerHost(None, swarm.docker_host),
                release=self.release,
                migration=self.migration,
                timeout_seconds=s.raw.host.command_timeout_seconds,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

        # 8. The backend after the gate; nginx in front of it on the edge nodes.
        be_port = ports["backend"]
        secret_files = {"database_url": self.database_url, "metrics_token": self.metrics_token.result}
        self.backend = HardenedService(
            "app-backend",
            service(
                "backend",
                image=s.images["backend"],
                env=backend_env(s, self.issuer_url, self.jwks_url, OIDC_CLIENT_ID, secret_files),
                files=tuple(
                    ServiceFile(f"{SECRETS_DIR}/{key}", value, secret=True, mode=0o400)
                    for key, value in sorted(secret_files.items())
                ),
                sysctls={"net.ipv4.ip_unprivileged_port_start": "0"} if be_port < 1024 else {},
                healthcheck=probe(
                    Healthcheck(
                        [
                            "CMD",
                            "python3",
                            "-c",
                            "import urllib.request; "
                            f"urllib.request.urlopen('http://127.0.0.1:{be_port}/healthz', timeout=3)",
                        ]
                    )
                ),
            ),
            self.zones,
            opts=pulumi.ResourceOptions.merge(
                on_swarm, pulumi.ResourceOptions(depends_on=[self.migration_gate.command, self.keycloak])
            ),
        )
        self.certificate = ServerCertificate("edge-tls", certificate_args(s), opts=pulumi.ResourceOptions(parent=self))
        nginx_conf = render_nginx_conf(s, ocsp_stapling=self.certificate.ocsp_stapling, layout=LAYOUT)
        self.nginx = HardenedService(
            "edge-nginx",
            service(
                "nginx",
                image=s.images["nginx"],
                command=["nginx", "-e", "stderr", "-c", LAYOUT.conf, "-g", "daemon off;"],
                files=service_files(
                    [
                        ContainerFile(LAYOUT.conf, nginx_conf),
                        ContainerFile(LAYOUT.certificate, self.certificate.cert_pem),
                        ContainerFile(LAYOUT.dhparam, DHPARAM_PEM),
                        ContainerFile(LAYOUT.private_key, self.certificate.private_key_pem, secret=True, mode="0400"),
                    ]
                ),
                ports=tuple(edge_ports(s)),
                sysctls={"net.ipv4.ip_unprivileged_port_start": "0"},
                healthcheck=probe(
                    http_probe(
                        ports["nginx_http"], "/healthz", expect="301" if s.is_prod and s.http_redirect else "200"
                    )
                ),
            ),
            self.zones,
            opts=pulumi.ResourceOptions.merge(
                on_swarm, pulumi.ResourceOptions(depends_on=[self.backend, self.oauth2_proxy])
            ),
        )

        # 9. Monitoring (R-OBS-1), once the exporter's role exists; its volumes on the data node.
        self.monitoring = (
            SwarmMonitoring(
                "monitoring",
                swarm_monitoring_args(
                    s,
                    metrics_token=self.metrics_token.result,
                    exporter_password=pw["exporter"],
                    internal_ca_pem=self.certificate.ca_cert_pem,
                    volume_provider=data_provider,
                    sql_exporter_after=[self.migration_gate.command],
                ),
                self.zones,
                opts=after_roles,
            )
            if s.features.monitoring
            else None
        )
        self.register_outputs({})

    def stack_outputs(self) -> dict[str, Any]:
        """The documented stack outputs (components/outputs.py), with the swarm's service names."""
        s = self.settings
        return {
            keys.PROFILE: s.profile.value,
            keys.PUBLIC_URL: s.public_url,
            keys.PORT_MATRIX: port_matrix(s, self._deployed()),  # where it is published on a swarm (ports.py)
            keys.ZONES: {
                zone.value: {
                    "network": self.zones.networks[zone].name,
                    "internal": self.zones.internal[zone],
                    "services": sorted(n for n in SERVICES if n in self._deployed() and zone in swarm_zones_of(s, n)),
                }
                for zone in Zone
            },
            keys.INTERNAL_URLS: {
                "backend": f"http://backend:{s.ports['backend']}",
                "keycloak": self.keycloak_internal_url,
                "oauth2_proxy": f"http://oauth2-proxy:{s.ports['oauth2_proxy']}",
                "postgres": f"postgres://postgres:{s.ports['postgres']}",
                **(internal_urls(s.ports) if self.monitoring else {}),
            },
            keys.DATABASE_URL: self.database_url,
            keys.MIGRATOR_URL: self.migrator_url,
            keys.DATALENS_DSN: self.datalens_dsn,
            keys.KEYCLOAK_ISSUER_URL: self.issuer_url,
            keys.KEYCLOAK_JWKS_URL: self.jwks_url,
            keys.OIDC_CLIENT_ID: OIDC_CLIENT_ID,
            keys.OIDC_CLIENT_SECRET: pulumi.Output.secret(self.client_secret.result),
            keys.KEYCLOAK_ADMIN: pulumi.Output.secret(
                {"username": s.raw.keycloak.admin_user, "password": self.admin_password.result}
            ),
            keys.KEYCLOAK_TEST_USERS: self.identity.test_users_output(),
            keys.CORS_ORIGINS: s.cors_origins,
            keys.DATALENS_EMBED_ORIGINS: list(s.raw.datalens.embed_origins),
            "swarm_services": {
                name: svc.name
                for name, svc in {
                    "postgres": self.postgres,
                    "keycloak": self.keycloak,
                    "oauth2_proxy": self.oauth2_proxy,
                    "backend": self.backend,
                    "nginx": self.nginx,
                    **({"backup": self.backups.service} if self.backups else {}),
                    **(self.monitoring.services if self.monitoring else {}),
                }.items()
            },
        }

    def _deployed(self) -> frozenset[str]:
        deployed = deployed_services() | ({"backup"} if self.backups else set())
        return deployed | (frozenset(self.monitoring.services) if self.monitoring else frozenset())


__all__ = ["SwarmPlatform"]
