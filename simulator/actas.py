"""The Connect act-as-user grant: ``POST /oauth2/token`` of the authorization server.

An app with the ``ACT_AS_USER`` scope trades a JWT assertion (HS256 with its shared secret,
``iss`` = ``urn:atlassian:connect:clientid:<oauthClientId>``, ``sub`` =
``urn:atlassian:connect:useraccountid:<accountId>``, ``aud`` = the authorization server,
``tnt`` = the site) for a bearer token that acts as that user on the site. Point the app's
``REACTOR_CONNECT_OAUTH_URL`` at the simulator.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.atlassian.connect_jwt import (
    USER_ASSERTION_AUDIENCE,
    TokenRejected,
    audiences,
    check_times,
    parse_token,
)
from simulator.api import site_base
from simulator.auth import token_key
from simulator.site import Simulator
from simulator.store import ConnectInstall, Token

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_PREFIX = "urn:atlassian:connect:clientid:"
USER_PREFIX = "urn:atlassian:connect:useraccountid:"
LIFETIME = 900


class GrantRefused(Exception):
    pass


def redeem(sim: Simulator, assertion: str, site: str, now: float) -> tuple[ConnectInstall, str]:
    """The app and the user an assertion names, once it verifies (pure apart from ``sim``)."""
    try:
        parsed = parse_token(assertion)
        if parsed.header.get("alg") != "HS256":
            raise GrantRefused("assertion must be HS256")
        claims = parsed.claims
        issuer, subject = str(claims.get("iss", "")), str(claims.get("sub", ""))
        app = next(
            (
                a
                for a in sim.store.connect_apps.values()
                if issuer == CLIENT_PREFIX + a.oauth_client_id and a.oauth_client_id
            ),
            None,
        )
        if app is None:
            raise GrantRefused("unknown client")
        expected = hmac.new(app.shared_secret.encode(), parsed.signing_input, hashlib.sha256)
        if not hmac.compare_digest(expected.digest(), parsed.signature):
            raise GrantRefused("bad signature")
        check_times(claims, now=int(now), leeway=30)
        if USER_ASSERTION_AUDIENCE not in (audiences(claims) or []):
            raise GrantRefused("wrong audience")
        if str(claims.get("tnt", "")).rstrip("/") != site:
            raise GrantRefused("wrong tenant")
    except TokenRejected as exc:
        raise GrantRefused(exc.code) from None
    account = subject.removeprefix(USER_PREFIX)
    if not subject.startswith(USER_PREFIX) or account not in sim.store.users:
        raise GrantRefused("unknown user")
    if "ACT_AS_USER" not in app.scopes:
        raise GrantRefused("the app lacks the ACT_AS_USER scope")
    return app, account


async def token(request: Request) -> JSONResponse:
    sim: Simulator = request.app.state.sim
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    if form.get("grant_type") != GRANT_TYPE:
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
    try:
        app, account = redeem(
            sim, str(form.get("assertion", "")), site_base(sim, request), time.time()
        )
    except GrantRefused as exc:
        sim.counters.auth_failures[f"actas: {exc}"] += 1
        return JSONResponse({"error": "invalid_grant"}, status_code=400)
    raw = secrets.token_urlsafe(32)
    sim.store.tokens[token_key(raw)] = Token("actas", account, time.time() + LIFETIME, app.key)
    sim.save_soon()
    return JSONResponse({"access_token": raw, "expires_in": LIFETIME, "token_type": "Bearer"})


routes = [Route("/oauth2/token", token, methods=["POST"])]
