"""oauth2-proxy's configuration (R-AUTH-1): the OIDC client in front of the protected routes.

nginx asks ``/oauth2/auth`` on every protected request (``auth_request``); oauth2-proxy answers 202 with
the user, e-mail and access token as ``X-Auth-Request-*`` headers, or 401.

**Issuer reachable from both sides.** Browsers know Keycloak as ``https://DOMAIN/sso`` (through nginx), and
that is the ``iss`` of every token (Keycloak's ``KC_HOSTNAME``). Inside Docker, DOMAIN is not nginx (in dev
it is ``localhost``, the container itself), and nginx starts only after oauth2-proxy is healthy, so OIDC
discovery through the public URL would fail or wait on a cycle. oauth2-proxy therefore skips discovery:
the browser-facing authorization endpoint is the public URL, the back-channel endpoints (token, JWKS,
userinfo) are Keycloak's address in the app zone, and tokens are still checked against the public issuer.
"""

from __future__ import annotations

import json

import pulumi

from components import metrics_gate
from components.hardened_container import CONFIG_DIR, SECRETS_DIR, ContainerFile
from components.settings import Settings

CONFIG_FILE = f"{CONFIG_DIR}/oauth2-proxy.cfg"
CLIENT_SECRET_FILE = f"{SECRETS_DIR}/oauth2_client_secret"
COOKIE_SECRET_FILE = f"{SECRETS_DIR}/oauth2_cookie_secret"
# oauth2-proxy reads the client secret from a file, but not the cookie secret: the entrypoint moves it from
# its file into the process environment at start, so it appears neither in the config nor in Docker's env.
ENTRYPOINT = ["/bin/sh", "-c"]
START = f'OAUTH2_PROXY_COOKIE_SECRET="$(cat {COOKIE_SECRET_FILE})" exec oauth2-proxy --config={CONFIG_FILE}'


def metrics_upstream_port(settings: Settings) -> int:
    """oauth2-proxy's metrics server on loopback, behind the metrics gate on ``oauth2_proxy_metrics`` (R-SEC-5)."""
    return metrics_gate.upstream_port(settings.ports["oauth2_proxy_metrics"], settings.ports["oauth2_proxy"])


def _toml(value: object) -> str:
    # JSON strings, booleans and lists of strings are valid TOML values.
    return json.dumps(value)


def render_oauth2_proxy_config(
    settings: Settings,
    *,
    issuer_url: str,
    keycloak_internal_url: str,
    client_id: str,
) -> str:
    """The config file (TOML) without secrets: known at preview, so policies check it (R-AUTH-1); pure, so
    tests read the same text the container gets.

    ``issuer_url`` is the realm's public URL (https://DOMAIN/sso/realms/REALM), ``keycloak_internal_url``
    Keycloak's base in the app zone (http://keycloak:8080/sso).
    """
    public_url = settings.public_url
    endpoints = f"{keycloak_internal_url}/realms/{settings.realm}/protocol/openid-connect"
    options: dict[str, object] = {
        "provider": "keycloak-oidc",
        "provider_display_name": "Fly Potato SSO",
        "client_id": client_id,
        "client_secret_file": CLIENT_SECRET_FILE,
        "oidc_issuer_url": issuer_url,
        "skip_oidc_discovery": True,
        "login_url": f"{issuer_url}/protocol/openid-connect/auth",
        "redeem_url": f"{endpoints}/token",
        "oidc_jwks_url": f"{endpoints}/certs",
        "profile_url": f"{endpoints}/userinfo",
        "validate_url": f"{endpoints}/userinfo",
        "scope": "openid email profile",
        "code_challenge_method": "S256",
        "redirect_url": f"{public_url}/oauth2/callback",
        "whitelist_domains": [settings.domain],
        "email_domains": ["*"],
        # auth_request mode: nginx proxies the application; oauth2-proxy only answers /oauth2/*.
        "upstreams": ["static://202"],
        "reverse_proxy": True,
        "real_client_ip_header": "X-Real-IP",
        "set_xauthrequest": True,
        "pass_access_token": True,
        # API clients may present a Keycloak access token instead of the cookie (audience: this client).
        "skip_jwt_bearer_tokens": True,
        "skip_provider_button": True,
        # The sign-in redirect carries the page the user asked for in the OIDC state, raw by default
        # ("nonce:/flights?from=1&to=2"): an unescaped & splits it on the way back and the rest of the query is
        # lost. Base64url has no & (nor ? / = :) to misread.
        "encode_state": True,
        "cookie_name": "_fly_potato_session",
        "cookie_secure": settings.is_prod,  # dev serves plain HTTP on localhost
        "cookie_httponly": True,
        "cookie_samesite": "lax",  # the default is empty (docs/requirements.md, R-AUTH-1)
        "cookie_expire": f"{settings.raw.keycloak.session_max_hours}h",
        # Refresh before Keycloak's access token expires, so the API never sees a stale one.
        "cookie_refresh": f"{max(1, settings.raw.keycloak.access_token_minutes - 1)}m",
        "http_address": f"0.0.0.0:{settings.ports['oauth2_proxy']}",
        # Loopback only: the metrics gate answers on the metrics listener and wants the metrics token (R-SEC-5).
        "metrics_address": f"127.0.0.1:{metrics_upstream_port(settings)}",
        # nginx logs requests (without query strings); oauth2-proxy's request log would show codes.
        "request_logging": False,
        "auth_logging": True,
        "standard_logging": True,
    }
    return "".join(f"{key} = {_toml(value)}\n" for key, value in options.items())


def oauth2_proxy_files(
    config: str, *, client_secret: pulumi.Input[str], cookie_secret: pulumi.Input[str]
) -> list[ContainerFile]:
    """The plain config file (:func:`render_oauth2_proxy_config`) and the two secret files."""
    return [
        ContainerFile(CONFIG_FILE, config, mode="0444"),
        ContainerFile(CLIENT_SECRET_FILE, client_secret, secret=True, mode="0400"),
        ContainerFile(COOKIE_SECRET_FILE, cookie_secret, secret=True, mode="0400"),
    ]
