"""Confluence Cloud REST client (v2, plus v1 search): auth modes, budget, pagination, errors."""

from app.confluence.client import ConfluenceClient, new_http_client
from app.confluence.errors import ConfluenceError, is_permanent
from app.confluence.models import UpdateResult
from app.confluence.pages import APP_EDIT_MARKER, is_app_edit
from app.confluence.site import Site
from app.confluence.transport import EVENT_HEADER

__all__ = [
    "APP_EDIT_MARKER",
    "EVENT_HEADER",
    "ConfluenceClient",
    "ConfluenceError",
    "Site",
    "UpdateResult",
    "is_app_edit",
    "is_permanent",
    "new_http_client",
]
