"""A loopback login.botframework.com: OpenID metadata and a JWKS of a locally generated RSA key, and tokens signed with it.

    async with BotFrameworkLogin() as login:
        env["SREBOT_TEAMS_OPENID_METADATA"] = login.metadata_url
        headers = {"Authorization": f"Bearer {login.token(app_id, service_url)}"}

`token()` makes what the Bot Framework sends to a bot (RS256, `iss` https://api.botframework.com, `aud`
the bot's app id, `serviceurl`, `nbf`/`exp`); its keyword arguments change any claim or sign with
another key (`key=BotFrameworkLogin.other_key()`), `unsigned()` makes an `alg: none` token.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from typing import Any, Self

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from devtools.loopback.serving import Served, serve

BOTFRAMEWORK_ISSUER = "https://api.botframework.com"


@functools.cache
def _key(which: str) -> rsa.RSAPrivateKey:
    """One key per role and process: a 2048-bit key costs 0.1 s of CPU to make, and a stand-in needs no new
    one for every test."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class BotFrameworkLogin(Served):
    """The OpenID metadata document (`/v1/.well-known/openidconfiguration`) and its key set (`/v1/.well-known/keys`)."""

    kid = "loopback-key-1"

    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.key = _key("published")
        self.requests: list[str] = []
        self._runner: web.AppRunner | None = None
        self.base = ""

    async def start(self) -> Self:
        app = web.Application()
        app.router.add_get("/v1/.well-known/openidconfiguration", self._metadata)
        app.router.add_get("/v1/.well-known/keys", self._keys)
        self._runner, self.base = await serve(app, self.host)
        return self

    @property
    def metadata_url(self) -> str:
        return f"{self.base}/v1/.well-known/openidconfiguration"

    async def _metadata(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        return web.json_response({
            "issuer": BOTFRAMEWORK_ISSUER,
            "authorization_endpoint": f"{self.base}/v1/authorize",
            "jwks_uri": f"{self.base}/v1/.well-known/keys",
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        })

    async def _keys(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        public.update(kid=self.kid, use="sig", alg="RS256", endorsements=["msteams"])
        return web.json_response({"keys": [public]})

    @staticmethod
    def other_key() -> rsa.RSAPrivateKey:
        """A key the JWKS does not publish."""
        return _key("other")

    def token(self, app_id: str, service_url: str, *, key: rsa.RSAPrivateKey | None = None,
              kid: str | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "serviceurl": service_url, "nbf": now - 60, "exp": now + 3600, "iss": BOTFRAMEWORK_ISSUER, "aud": app_id,
        }
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": kid or self.kid})

    @staticmethod
    def unsigned(app_id: str, service_url: str) -> str:
        """An `alg: none` token with the right claims and no signature."""
        now = int(time.time())

        def part(value: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

        claims = {"serviceurl": service_url, "nbf": now - 60, "exp": now + 3600, "iss": BOTFRAMEWORK_ISSUER,
                  "aud": app_id}
        return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."
