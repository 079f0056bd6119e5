"""IdentityRealm: the stack's Keycloak realm, groups, the oauth2-proxy client and its mappers (R-AUTH-3).

Managed with the ``pulumi_keycloak`` provider as the bootstrap admin (``admin-cli``, password grant) on the
operator endpoint under ``/sso``, and only after the Keycloak container reports ready.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_keycloak as keycloak

from components.secrets import generated_password

TYPE = "fly-potato:identity:IdentityRealm"

ADMIN_REALM = "master"
ADMIN_CLIENT_ID = "admin-cli"

# Keycloak's policy language; generated passwords (32 letters and digits) satisfy it.
CREDENTIAL_RULES = (
    "length(12) and maxLength(128) and upperCase(1) and lowerCase(1) and digits(1) "
    "and notUsername and notEmail and passwordHistory(3)"
)
TEST_USER_EMAIL_DOMAIN = "users.fly-potato.test"  # reserved TLD: the dev users' mail goes nowhere


@dataclass(frozen=True)
class SeededUser:
    """A dev test user: created with a generated password, member of ``groups``."""

    username: str
    groups: Sequence[str]


@dataclass(frozen=True)
class RealmConfig:
    """What the stack decides about its realm: names, URLs, lifetimes, groups and the seeded users."""

    realm: str
    public_url: str  # the browsers' origin of the stack: redirect URIs, web origins
    operator_url: str  # Keycloak's root (without /sso) where the provider reaches it
    admin_user: str
    client_timeout_seconds: int
    access_token_minutes: int
    session_idle_minutes: int
    session_max_hours: int
    groups: Sequence[str]
    groups_full_path: bool
    users: Sequence[SeededUser]  # empty unless the stack seeds test users
    protect: bool  # prod: deleting the realm (and every user in it) is refused
    rotation_epoch: int  # the test users' passwords rotate with it (R-SEC-4)


@dataclass(frozen=True)
class IdentityArgs:
    """The realm's config, the Keycloak that hosts it, its bootstrap admin and the OIDC client to create."""

    config: RealmConfig
    keycloak: pulumi.Resource  # its container or service, health-gated
    base_path: str
    admin_password: pulumi.Input[str]
    client_id: str
    client_secret: pulumi.Input[str]


class IdentityRealm(pulumi.ComponentResource):
    """One realm per stack with groups, a confidential OIDC client for oauth2-proxy and dev test users."""

    def __init__(self, name: str, args: IdentityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        cfg = args.config
        public_url = cfg.public_url
        client_id = args.client_id

        # initial_login=False: a preview must not need a running Keycloak. depends_on the health-gated container
        # (wait=True): Keycloak 26 answers HTTP before its realms are ready.
        self.provider = keycloak.Provider(
            f"{name}-provider",
            url=cfg.operator_url,
            base_path=args.base_path,
            realm=ADMIN_REALM,
            client_id=ADMIN_CLIENT_ID,
            username=cfg.admin_user,
            password=pulumi.Output.secret(args.admin_password),
            initial_login=False,
            client_timeout=cfg.client_timeout_seconds,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[args.keycloak], additional_secret_outputs=["password"]
            ),
        )
        in_keycloak = pulumi.ResourceOptions(parent=self, provider=self.provider)

        self.realm = keycloak.Realm(
            f"{name}-realm",
            realm=cfg.realm,
            enabled=True,
            display_name="Fly Potato",
            # "external": TLS required except from private addresses (nginx terminates TLS in front).
            ssl_required="external",
            registration_allowed=False,
            reset_password_allowed=False,
            remember_me=False,
            verify_email=False,
            login_with_email_allowed=True,
            duplicate_emails_allowed=False,
            edit_username_allowed=False,
            password_policy=CREDENTIAL_RULES,
            access_token_lifespan=f"{cfg.access_token_minutes}m",
            sso_session_idle_timeout=f"{cfg.session_idle_minutes}m",
            sso_session_max_lifespan=f"{cfg.session_max_hours}h",
            offline_session_idle_timeout="720h",
            revoke_refresh_token=True,
            refresh_token_max_reuse=0,
            security_defenses=keycloak.RealmSecurityDefensesArgs(
                brute_force_detection=keycloak.RealmSecurityDefensesBruteForceDetectionArgs(
                    permanent_lockout=False,
                    max_login_failures=5,
                    wait_increment_seconds=60,
                    quick_login_check_milli_seconds=1000,
                    minimum_quick_login_wait_seconds=60,
                    max_failure_wait_seconds=900,
                    failure_reset_time_seconds=43200,
                ),
                headers=keycloak.RealmSecurityDefensesHeadersArgs(
                    x_frame_options="SAMEORIGIN",
                    content_security_policy="frame-src 'self'; frame-ancestors 'self'; object-src 'none';",
                    x_content_type_options="nosniff",
                    x_robots_tag="none",
                    referrer_policy="no-referrer",
                    strict_transport_security="max-age=31536000; includeSubDomains",
                ),
            ),
            # Deleting a realm deletes every user in it.
            opts=pulumi.ResourceOptions.merge(in_keycloak, pulumi.ResourceOptions(protect=cfg.protect)),
        )
        realm_id = self.realm.id

        self.groups = {
            group: keycloak.Group(f"{name}-group-{group}", realm_id=realm_id, name=group, opts=in_keycloak)
            for group in cfg.groups
        }

        self.client = keycloak.openid.Client(
            f"{name}-client-{client_id}",
            realm_id=realm_id,
            client_id=client_id,
            name="oauth2-proxy (Fly Potato)",
            enabled=True,
            access_type="CONFIDENTIAL",
            client_secret=args.client_secret,
            standard_flow_enabled=True,
            implicit_flow_enabled=False,
            direct_access_grants_enabled=False,
            service_accounts_enabled=False,
            oauth2_device_authorization_grant_enabled=False,
            pkce_code_challenge_method="S256",
            root_url=public_url,
            base_url=f"{public_url}/",
            valid_redirect_uris=[f"{public_url}/oauth2/callback"],
            valid_post_logout_redirect_uris=[f"{public_url}/"],
            web_origins=[public_url],
            consent_required=False,
            full_scope_allowed=False,
            opts=in_keycloak,
        )

        def user_property(key: str, prop: str, claim: str) -> keycloak.openid.UserPropertyProtocolMapper:
            return keycloak.openid.UserPropertyProtocolMapper(
                f"{name}-mapper-{key}",
                name=key,
                user_property=prop,
                claim_name=claim,
                claim_value_type="String",
                add_to_id_token=True,
                add_to_access_token=True,
                add_to_userinfo=True,
                realm_id=realm_id,
                client_id=self.client.id,
                opts=in_keycloak,
            )

        self.mappers: dict[str, pulumi.CustomResource] = {
            "email": user_property("email", "email", "email"),
            "preferred_username": user_property("preferred_username", "username", "preferred_username"),
            "groups": keycloak.openid.GroupMembershipProtocolMapper(
                f"{name}-mapper-groups",
                name="groups",
                claim_name="groups",
                full_path=cfg.groups_full_path,
                add_to_id_token=True,
                add_to_access_token=True,
                add_to_userinfo=True,
                realm_id=realm_id,
                client_id=self.client.id,
                opts=in_keycloak,
            ),
            # The backend accepts access tokens only when they name this client as audience.
            "audience": keycloak.openid.AudienceProtocolMapper(
                f"{name}-mapper-audience",
                name=f"audience-{client_id}",
                included_client_audience=self.client.client_id,
                add_to_access_token=True,
                add_to_id_token=False,
                realm_id=realm_id,
                client_id=self.client.id,
                opts=in_keycloak,
            ),
        }

        self.test_user_passwords: dict[str, pulumi.Output[str]] = {}
        self.users: dict[str, keycloak.User] = {}
        for user in cfg.users:
            password = generated_password(f"{name}-user-{user.username}-password", cfg.rotation_epoch, parent=self)
            self.test_user_passwords[user.username] = password.result
            created = keycloak.User(
                f"{name}-user-{user.username}",
                realm_id=realm_id,
                username=user.username,
                email=f"{user.username}@{TEST_USER_EMAIL_DOMAIN}",
                email_verified=True,
                first_name=user.username,
                # Keycloak's user profile refuses parentheses and most punctuation in person names.
                last_name="Test User",
                enabled=True,
                initial_password=keycloak.UserInitialPasswordArgs(
                    value=pulumi.Output.secret(password.result), temporary=False
                ),
                # Keycloak applies an initial password only at creation: a rotated one needs a new user.
                opts=pulumi.ResourceOptions.merge(
                    in_keycloak,
                    pulumi.ResourceOptions(replace_on_changes=["initialPassword"], delete_before_replace=True),
                ),
            )
            self.users[user.username] = created
            keycloak.UserGroups(
                f"{name}-user-{user.username}-groups",
                realm_id=realm_id,
                user_id=created.id,
                group_ids=[self.groups[group].id for group in user.groups],
                exhaustive=True,
                opts=in_keycloak,
            )

        self.register_outputs({"realm": self.realm.realm, "client_id": self.client.client_id})

    def test_users_output(self) -> pulumi.Output[dict[str, str]]:
        """Username → generated password of the dev test users, as one Pulumi secret."""
        if not self.test_user_passwords:
            return pulumi.Output.secret({})
        return pulumi.Output.secret(pulumi.Output.all(**self.test_user_passwords))
