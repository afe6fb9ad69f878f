"""Where a tenant's Confluence answers and how we authenticate there.

Each auth mode reaches Confluence at a different root:

=========  ===============================================  =================================
mode       API root                                         ``Authorization``
=========  ===============================================  =================================
connect    the site, from the install ``baseUrl``           ``JWT`` (per request, qsh bound)
forge      the installation's ``apiBaseUrl`` (the gateway,   ``Bearer`` app system token
           ``https://api.atlassian.com/ex/confluence/<id>``)
oauth      ``https://api.atlassian.com/ex/confluence/<id>``  ``Bearer`` OAuth 2.0 access token
basic      the site                                         ``Basic`` email + API token
=========  ===============================================  =================================

Below the root every mode uses the same paths: ``/wiki/api/v2/...`` and ``/wiki/rest/api/...``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import httpx

from app.confluence.auth import BearerAuth, ConnectJWTAuth, TokenProvider, basic_auth

Mode = Literal["connect", "forge", "oauth", "basic"]
GATEWAY = "https://api.atlassian.com/ex/confluence"


def _split_site(url: str) -> tuple[str, str]:
    """(origin, wiki path) of a site URL such as ``https://x.atlassian.net/wiki``."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}", path or "/wiki"


@dataclass(frozen=True, slots=True)
class Site:
    """One tenant's Confluence: ``api_root`` + ``wiki_path`` + auth, and the budget key."""

    tenant: str
    api_root: str
    auth: httpx.Auth
    mode: Mode
    wiki_path: str = "/wiki"

    @property
    def wiki_base(self) -> str:
        return self.api_root + self.wiki_path

    def v2(self, path: str) -> str:
        """Absolute URL of a REST v2 path such as ``/pages/123``."""
        return f"{self.wiki_base}/api/v2{path}"

    def v1(self, path: str) -> str:
        """Absolute URL of a REST v1 path such as ``/search``."""
        return f"{self.wiki_base}/rest/api{path}"

    @classmethod
    def connect(
        cls,
        *,
        tenant: str,
        base_url: str,
        app_key: str,
        shared_secret: str,
        clock: Callable[[], float] | None = None,
    ) -> Site:
        """A Connect installation: ``base_url`` is the install payload's ``baseUrl``."""
        origin, wiki_path = _split_site(base_url)
        auth = ConnectJWTAuth(
            app_key=app_key,
            shared_secret=shared_secret,
            base_url=origin + wiki_path,
            clock=clock,
        )
        return cls(tenant=tenant, api_root=origin, wiki_path=wiki_path, auth=auth, mode="connect")

    @classmethod
    def forge(cls, *, tenant: str, api_base_url: str, token: TokenProvider) -> Site:
        """A Forge installation: the FIT's ``apiBaseUrl`` and a provider of the system token."""
        root = api_base_url.strip().rstrip("/")
        _split_site(root)
        return cls(
            tenant=tenant, api_root=root, auth=BearerAuth(token, label="forge"), mode="forge"
        )

    @classmethod
    def oauth(
        cls, *, tenant: str, cloud_id: str, token: str | TokenProvider, gateway: str = GATEWAY
    ) -> Site:
        """An OAuth 2.0 (3LO) grant on the site ``cloud_id``, through the API gateway."""
        auth = BearerAuth.static(token) if isinstance(token, str) else BearerAuth(token)
        root = f"{gateway.rstrip('/')}/{cloud_id}"
        return cls(tenant=tenant, api_root=root, auth=auth, mode="oauth")

    @classmethod
    def basic(cls, *, site_url: str, email: str, api_token: str, tenant: str | None = None) -> Site:
        """Email + API token on the site itself (``https://x.atlassian.net`` or ``.../wiki``)."""
        origin, wiki_path = _split_site(site_url)
        return cls(
            tenant=tenant or urlsplit(origin).netloc,
            api_root=origin,
            wiki_path=wiki_path,
            auth=basic_auth(email, api_token),
            mode="basic",
        )
