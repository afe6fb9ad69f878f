"""In-memory state of one simulated Confluence site, saved to and loaded from a JSON file.

Plain dataclasses, no I/O except :meth:`Store.save` / :meth:`Store.load`. Ids are strings of
digits, as Confluence returns them; attachments are ``att<digits>``.
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

Access = Literal["none", "read", "write", "admin"]
ACCESS_ORDER: dict[str, int] = {"none": 0, "read": 1, "write": 2, "admin": 3}


@dataclass
class User:
    account_id: str
    email: str
    display_name: str
    account_type: str = "atlassian"  # "atlassian" | "app"
    api_token: str = ""
    site_admin: bool = False


@dataclass
class Revision:
    """One version of a page, blog post or comment, with the title and body it had."""

    number: int
    author_id: str
    created_at: str
    message: str = ""
    minor_edit: bool = False
    title: str = ""
    representation: str = "storage"
    value: str = ""


@dataclass
class Space:
    id: str
    key: str
    name: str
    author_id: str
    created_at: str
    type: str = "global"
    status: str = "current"
    description: str = ""
    homepage_id: str | None = None
    default_access: str = "write"
    access: dict[str, str] = field(default_factory=dict)
    label_ids: list[str] = field(default_factory=list)


@dataclass
class Content:
    """A page or a blog post. ``revisions[-1]`` is the current version."""

    id: str
    type: str  # "page" | "blogpost"
    space_id: str
    status: str  # current | draft | trashed | deleted | archived
    author_id: str
    created_at: str
    revisions: list[Revision] = field(default_factory=list)
    parent_id: str | None = None
    owner_id: str | None = None
    last_owner_id: str | None = None
    position: int | None = None
    subtype: str | None = None
    draft: Revision | None = None
    label_ids: list[str] = field(default_factory=list)

    @property
    def current(self) -> Revision:
        return self.revisions[-1]

    @property
    def title(self) -> str:
        return self.current.title


@dataclass
class Comment:
    id: str
    kind: str  # "footer" | "inline"
    container_id: str
    container_type: str  # "page" | "blogpost"
    author_id: str
    created_at: str
    revisions: list[Revision] = field(default_factory=list)
    parent_comment_id: str | None = None
    status: str = "current"
    text_selection: str | None = None
    match_count: int | None = None
    match_index: int | None = None
    marker_ref: str | None = None
    resolution_status: str | None = None
    resolution_modifier_id: str | None = None
    resolution_modified_at: str | None = None

    @property
    def current(self) -> Revision:
        return self.revisions[-1]


@dataclass
class Attachment:
    id: str
    container_id: str
    container_type: str
    title: str
    media_type: str
    file_size: int
    author_id: str
    created_at: str
    status: str = "current"
    comment: str = ""
    file_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    version: int = 1


@dataclass
class Label:
    id: str
    name: str
    prefix: str = "global"


@dataclass
class ConnectInstall:
    """A Connect app installed on the site (the descriptor parts the simulator needs)."""

    key: str
    base_url: str
    client_key: str
    shared_secret: str
    account_id: str
    webhooks: dict[str, list[str]] = field(default_factory=dict)  # event -> relative urls
    lifecycle: dict[str, str] = field(default_factory=dict)
    scopes: list[str] = field(default_factory=list)
    enabled: bool = True
    oauth_client_id: str = ""
    # The Forge installation of the same app on this site, named in its lifecycle payloads
    # (a Connect app that also runs on Forge): the app maps both routes to one tenant.
    installation_id: str = ""


@dataclass
class ForgeInstall:
    """A Forge app whose triggers are delivered to a remote."""

    app_id: str
    installation_id: str
    remote_url: str  # absolute URL events are POSTed to
    events: list[str]
    account_id: str
    environment: str = "DEVELOPMENT"


@dataclass
class Token:
    """A bearer token the simulator issued: an OAuth token for a user or a Forge system token."""

    kind: str  # "oauth" (3LO) | "forge" (app system token) | "actas" (Connect act-as-user)
    account_id: str
    expires_at: float
    app_id: str | None = None


T = TypeVar("T")


def _build(cls: type[T], data: dict[str, Any]) -> T:
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    kwargs = {k: v for k, v in data.items() if k in names}
    if "revisions" in kwargs:
        kwargs["revisions"] = [Revision(**r) for r in kwargs["revisions"]]
    if kwargs.get("draft"):
        kwargs["draft"] = Revision(**kwargs["draft"])
    return cls(**kwargs)


@dataclass
class Store:
    """Everything the site holds; ``cloud_id`` names the site behind the gateway."""

    cloud_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    next_id: int = 65_537
    users: dict[str, User] = field(default_factory=dict)
    spaces: dict[str, Space] = field(default_factory=dict)
    contents: dict[str, Content] = field(default_factory=dict)
    comments: dict[str, Comment] = field(default_factory=dict)
    attachments: dict[str, Attachment] = field(default_factory=dict)
    labels: dict[str, Label] = field(default_factory=dict)
    connect_apps: dict[str, ConnectInstall] = field(default_factory=dict)
    # Uninstalled Connect apps: a site keeps an app's clientKey (and its account, OAuth client
    # and Forge installation) across an uninstall and the next install.
    departed_apps: dict[str, ConnectInstall] = field(default_factory=dict)
    forge_apps: dict[str, ForgeInstall] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)

    def new_id(self) -> str:
        self.next_id += 1
        return str(self.next_id)

    # -- users -----------------------------------------------------------------------------
    def add_user(
        self,
        email: str,
        display_name: str,
        *,
        api_token: str | None = None,
        site_admin: bool = False,
        account_type: str = "atlassian",
    ) -> User:
        account_id = f"712020:{uuid.uuid4()}"
        user = User(
            account_id=account_id,
            email=email,
            display_name=display_name,
            account_type=account_type,
            api_token=api_token if api_token is not None else secrets.token_urlsafe(24),
            site_admin=site_admin,
        )
        self.users[account_id] = user
        return user

    def user_by_email(self, email: str) -> User | None:
        return next((u for u in self.users.values() if u.email.lower() == email.lower()), None)

    def find_user(self, ref: str) -> User | None:
        """A user by account id or email."""
        return self.users.get(ref) or self.user_by_email(ref)

    # -- lookups -------------------------------------------------------------------------
    def space_by_key(self, key: str) -> Space | None:
        return next((s for s in self.spaces.values() if s.key == key), None)

    def label_named(self, name: str, prefix: str = "global") -> Label:
        for label in self.labels.values():
            if label.name == name and label.prefix == prefix:
                return label
        label = Label(id=self.new_id(), name=name, prefix=prefix)
        self.labels[label.id] = label
        return label

    def access(self, account_id: str, space: Space) -> str:
        """The effective access of a user to a space: none, read, write or admin."""
        user = self.users.get(account_id)
        if user is not None and user.site_admin:
            return "admin"
        if account_id == space.author_id:
            return "admin"
        return space.access.get(account_id, space.default_access)

    def can(self, account_id: str, space: Space, needed: Access) -> bool:
        return ACCESS_ORDER[self.access(account_id, space)] >= ACCESS_ORDER[needed]

    def ancestors(self, content: Content) -> list[Content]:
        """Parents of a page from the nearest up to the root."""
        chain: list[Content] = []
        parent_id = content.parent_id
        while parent_id and parent_id in self.contents and len(chain) < 100:
            parent = self.contents[parent_id]
            chain.append(parent)
            parent_id = parent.parent_id
        return chain

    # -- persistence ---------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Store:
        store = cls(cloud_id=data["cloud_id"], next_id=int(data["next_id"]))
        tables: list[tuple[str, type[Any]]] = [
            ("users", User),
            ("spaces", Space),
            ("contents", Content),
            ("comments", Comment),
            ("attachments", Attachment),
            ("labels", Label),
            ("connect_apps", ConnectInstall),
            ("departed_apps", ConnectInstall),
            ("forge_apps", ForgeInstall),
            ("tokens", Token),
        ]
        for name, kind in tables:
            setattr(store, name, {k: _build(kind, v) for k, v in data.get(name, {}).items()})
        return store

    def save(self, path: Path) -> None:
        """Write atomically (a temporary file renamed over the target)."""
        tmp = path.with_suffix(path.suffix + ".tmp")
        # it holds the site's API tokens and the installed apps' shared secrets: owner only
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(json.dumps(self.to_json(), indent=1))
        os.chmod(tmp, 0o600)  # an older file of that name kept its mode
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Store:
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
