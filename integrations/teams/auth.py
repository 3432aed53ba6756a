"""Who may talk to srebot over /api/messages, and where its replies may go.

A request is authenticated with the Agents SDK's JwtTokenValidator (signature against the published
signing keys, audience = the bot's app id, issuer allow-list, expiry), and its `serviceUrl` must be a
Bot Framework / Teams service host or a configured prefix and, with credentials, equal the token's
`serviceurl` claim. Without an app id only the explicit local mode (SREBOT_TEAMS_INSECURE=local)
accepts requests, and then without any identity.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from jwt import PyJWKClientConnectionError
from microsoft_agents.activity import Activity
from microsoft_agents.hosting.core import AgentAuthConfiguration, ClaimsIdentity
from microsoft_agents.hosting.core.authorization import AuthTypes
from microsoft_agents.hosting.core.authorization.jwt import JwtTokenValidator
from microsoft_agents.hosting.core.authorization.jwt import jwt_token_validator as sdk_jwt
from yarl import URL

from bot.config import ConfigError, Settings

log = logging.getLogger("srebot.teams")

# The hosts Teams and the Bot Framework put in `serviceUrl` (public and government clouds); a
# subdomain counts, and only over https.
SERVICE_HOSTS = (
    "smba.trafficmanager.net",
    "botframework.com",
    "botframework.us",
    "botframework.azure.us",
    "teams.microsoft.com",
    "teams.microsoft.us",
)
SERVICE_URL_CLAIM = "serviceurl"
METADATA_TIMEOUT = 10.0


class Refused(Exception):
    """The request is not from the Bot Framework for this bot, or names a destination not allowed (401)."""


class Unavailable(Exception):
    """The signing keys could not be fetched now: not the caller's fault, worth a retry (503)."""


def _origin_and_path(url: str) -> tuple[str, int | None, str, str] | None:
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return None
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.user or parsed.password:
        return None
    path = parsed.path if parsed.path.endswith("/") else parsed.path + "/"
    return parsed.scheme, parsed.port, parsed.host.lower().rstrip("."), path


@dataclass(frozen=True)
class ServiceUrls:
    """The allow-list of reply destinations: the service hosts above, plus configured URL prefixes
    (scheme, host and port equal, path a prefix at a `/` boundary)."""

    prefixes: tuple[str, ...] = ()

    def allows(self, url: str | None) -> bool:
        if not url:
            return False
        parts = _origin_and_path(url)
        if parts is None:
            return False
        scheme, port, host, path = parts
        if scheme == "https" and port == 443 and any(host == h or host.endswith("." + h) for h in SERVICE_HOSTS):
            return True
        for prefix in self.prefixes:
            allowed = _origin_and_path(prefix)
            if allowed and allowed[:3] == (scheme, port, host) and path.startswith(allowed[3]):
                return True
        return False


def same_service_url(a: str, b: str) -> bool:
    """The token's `serviceurl` claim names the activity's serviceUrl (trailing slash and host case aside)."""
    left, right = _origin_and_path(a), _origin_and_path(b)
    return left is not None and left == right


def auth_configuration(settings: Settings) -> AgentAuthConfiguration:
    """The SDK connection settings of the bot's identity, used both to validate incoming tokens and to
    get tokens for the Bot Connector. SingleTenant (the default) and UserAssignedMSI authenticate in the
    bot's tenant; MultiTenant (registrations made before 31 July 2025) in the Bot Framework tenant."""
    app_type = settings.microsoft_app_type
    tenant = settings.microsoft_app_tenant_id.strip() or None
    if app_type == "MultiTenant":
        tenant = tenant or "botframework.com"
    if app_type == "SingleTenant" and not tenant:
        raise ConfigError("MICROSOFT_APP_TENANT_ID is required with MICROSOFT_APP_TYPE=SingleTenant")
    return AgentAuthConfiguration(
        auth_type=AuthTypes.user_managed_identity if app_type == "UserAssignedMSI" else AuthTypes.client_secret,
        client_id=settings.microsoft_app_id.strip(),
        tenant_id=tenant,
        client_secret=settings.microsoft_app_password.get_secret_value() or None,
        validate_issuer=True,  # off by default in the SDK, for backward compatibility only
        anonymous_allowed=False,
    )


class _PinnedSigningKeys(sdk_jwt._JwkClientManager):
    """Every signing key from one OpenID metadata document's `jwks_uri`, instead of the key set the SDK
    picks from the token's issuer (login.botframework.com or the tenant's): for sovereign clouds and for
    tests with a locally generated key set."""

    def __init__(self, metadata_url: str):
        super().__init__()
        self.metadata_url = metadata_url
        self._jwks_uri: str | None = None
        self._lock = asyncio.Lock()

    async def _resolve(self) -> str:
        async with self._lock:
            if self._jwks_uri is None:
                try:
                    timeout = aiohttp.ClientTimeout(total=METADATA_TIMEOUT)
                    async with aiohttp.ClientSession(timeout=timeout) as http:
                        async with http.get(self.metadata_url) as response:
                            response.raise_for_status()
                            document = await response.json(content_type=None)
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    raise PyJWKClientConnectionError(f"OpenID metadata: {exc.__class__.__name__}") from None
                jwks_uri = document.get("jwks_uri") if isinstance(document, dict) else None
                if not isinstance(jwks_uri, str):
                    raise PyJWKClientConnectionError("OpenID metadata has no jwks_uri")
                self._jwks_uri = jwks_uri
            return self._jwks_uri

    async def get_signing_key(self, jwks_uri: str, header: dict[str, Any]) -> Any:
        return await super().get_signing_key(await self._resolve(), header)


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, None for anything else."""
    parts = (header or "").split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1]


class TeamsAuth:
    """Authenticates Teams requests for one configuration (mode "auth" or "local")."""

    def __init__(self, settings: Settings):
        self.mode = settings.teams_mode
        if self.mode == "off":
            raise ConfigError("Teams is off: set MICROSOFT_APP_ID (or SREBOT_TEAMS_INSECURE=local for local testing)")
        self.app_id = settings.microsoft_app_id.strip()
        self.tenant_id = settings.microsoft_app_tenant_id.strip() or None
        self.service_urls = ServiceUrls(tuple(settings.teams_service_urls))
        self.configuration = auth_configuration(settings) if self.mode == "auth" else None
        self._validator = JwtTokenValidator(self.configuration) if self.configuration else None
        if self._validator is not None and settings.teams_openid_metadata:
            self._validator._jwk_client_manager = _PinnedSigningKeys(settings.teams_openid_metadata)

    @property
    def local(self) -> bool:
        return self.mode == "local"

    async def identity(self, authorization: str | None) -> ClaimsIdentity:
        """The token's claims, or Refused / Unavailable. Local mode has no identity (anonymous)."""
        if self._validator is None:
            return ClaimsIdentity()
        token = bearer_token(authorization)
        if token is None:
            raise Refused("no bearer token")
        try:
            return await self._validator.validate_token(token)
        except PyJWKClientConnectionError as exc:
            raise Unavailable(str(exc)) from None
        except Exception as exc:  # a malformed or unsigned JWT, an unknown key, wrong audience or issuer, expired
            raise Refused(exc.__class__.__name__) from None

    def check_destination(self, identity: ClaimsIdentity, activity: Activity) -> None:
        """Refused unless replies to this activity may go to its serviceUrl."""
        service_url = activity.service_url
        if not self.service_urls.allows(service_url):
            raise Refused("serviceUrl is not a Teams service host nor in SREBOT_TEAMS_SERVICE_URLS")
        if self.local:
            return
        claimed = identity.get_claim_value(SERVICE_URL_CLAIM)
        if not isinstance(claimed, str) or not same_service_url(claimed, service_url):
            raise Refused("serviceUrl does not match the token's serviceurl claim")
