"""An in-memory Confluence behind ``httpx.MockTransport``, checked against the official schemas.

Every request must match a documented operation and validate against its parameters and body;
every success answer it gives validates against the documented response schema, so a test that
passes here also proves the shapes the client sends and reads are the real ones. Lists paginate
with an opaque cursor in both the ``Link`` header and ``_links.next`` (host-relative, with
``/wiki``), v1 search with ``_links.next`` relative to the base (no ``/wiki``), as Confluence does.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from app.confluence.pages import count_matches
from tests.confluence.openapi import Operation, operation_for

STAMP = "2026-11-27T10:00:00.000Z"
AUTHOR = "557058:0f1e2d3c-aaaa-bbbb-cccc-000000000001"
Json = dict[str, Any]


def envelope(status: int, code: str, title: str, detail: str | None = None) -> Json:
    return {"errors": [{"status": status, "code": code, "title": title, "detail": detail}]}


class FakeConfluence:
    """State plus a request handler; ``transport`` plugs it into an ``httpx.AsyncClient``."""

    def __init__(self, api_root: str = "https://acme.atlassian.net") -> None:
        self.api_root = api_root.rstrip("/")
        self.prefix = urlsplit(self.api_root).path
        self.site_base = "https://acme.atlassian.net/wiki"
        self.ids = itertools.count(1000)
        self.requests: list[httpx.Request] = []
        self.spaces: dict[str, Json] = {}
        self.content: dict[str, Json] = {}  # pages and blog posts, "kind" field tells which
        self.comments: dict[str, Json] = {}
        self.attachments: dict[str, Json] = {}
        self.labels: dict[str, Json] = {}
        self.content_labels: dict[str, list[str]] = {}
        self.space_labels: dict[str, list[str]] = {}
        self.users: list[Json] = []
        self.failures: list[httpx.Response] = []
        self.headers: dict[str, str] = {}
        self.before_put: Callable[[str], None] | None = None
        self.check_auth: Callable[[httpx.Request], None] | None = None

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def new_id(self) -> str:
        return str(next(self.ids))

    # -- seeding ----------------------------------------------------------------------------

    def add_space(self, key: str, name: str = "") -> Json:
        sid = self.new_id()
        self.spaces[sid] = {
            "id": sid, "key": key, "name": name or key, "type": "global", "status": "current",
            "authorId": AUTHOR, "createdAt": STAMP, "_links": {"webui": f"/spaces/{key}"},
        }  # fmt: skip
        self.spaces[sid]["homepageId"] = self.add_content(sid, "Home", "<p>home</p>")["id"]
        return self.spaces[sid]

    def add_content(
        self, space_id: str, title: str, body: str, *, kind: str = "page", parent: str | None = None
    ) -> Json:
        cid = self.new_id()
        self.content[cid] = {
            "kind": kind, "id": cid, "status": "current", "title": title, "spaceId": space_id,
            "parentId": parent, "body": body, "versions": [self._version(1, "", AUTHOR)],
        }  # fmt: skip
        return self.content[cid]

    def user_edit(self, content_id: str, body: str, title: str | None = None) -> None:
        """Someone else saves the page: new body, version + 1."""
        item = self.content[content_id]
        item["body"] = body
        item["title"] = title or item["title"]
        item["versions"].append(self._version(len(item["versions"]) + 1, "user edit", AUTHOR))

    @staticmethod
    def _version(number: int, message: str, author: str) -> Json:
        return {
            "createdAt": STAMP, "message": message, "number": number,
            "minorEdit": False, "authorId": author,
        }  # fmt: skip

    # -- dispatch ---------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert str(request.url).startswith(self.api_root + "/"), request.url
        path = request.url.path[len(self.prefix) :]
        op = operation_for(request.method, path)
        op.check_request(request, path)
        if self.check_auth is not None:
            self.check_auth(request)
        if self.failures:
            return self.failures.pop(0)
        params = op.pattern.fullmatch(path)
        assert params is not None
        response: httpx.Response = getattr(self, op.name)(request, op, **params.groupdict())
        response.headers.update(self.headers)
        if response.status_code < 300:
            op.check_response(response.status_code, json.loads(response.content or b"null"))
        return response

    def error(self, status: int, code: str, title: str) -> httpx.Response:
        return httpx.Response(status, json=envelope(status, code, title))

    def _query(self, request: httpx.Request) -> dict[str, str]:
        return dict(request.url.params)

    def _list(
        self, request: httpx.Request, items: list[Json], default_limit: int = 25
    ) -> httpx.Response:
        query = self._query(request)
        limit = int(query.get("limit", default_limit))
        cursor = query.get("cursor")
        start = json.loads(base64.b64decode(cursor))["offset"] if cursor else 0
        page = items[start : start + limit]
        links: Json = {"base": self.site_base}
        headers = {}
        if start + limit < len(items):
            token = base64.b64encode(json.dumps({"offset": start + limit}).encode()).decode()
            rest = {k: v for k, v in request.url.params.multi_items() if k != "cursor"}
            # The cursor first, other parameters after it, as Confluence writes its links.
            links["next"] = (
                request.url.path[len(self.prefix) :] + "?" + urlencode({"cursor": token, **rest})
            )
            headers["Link"] = f'<{links["next"]}>; rel="next", <{self.site_base}>; rel="base"'
        return httpx.Response(200, json={"results": page, "_links": links}, headers=headers)

    def _content_json(self, item: Json, body_format: str | None, single: bool = True) -> Json:
        version = item["versions"][-1]
        data: Json = {
            "id": item["id"], "status": item["status"], "title": item["title"],
            "spaceId": item["spaceId"], "authorId": AUTHOR, "createdAt": STAMP,
            "version": version, "body": {},
            "_links": {"webui": f"/spaces/x/pages/{item['id']}", "editui": "/e", "tinyui": "/x/t"},
        }  # fmt: skip
        if item["kind"] == "page":
            data.update(parentType="page", position=0, ownerId=AUTHOR, lastOwnerId=None)
            if item["parentId"] is not None:
                data["parentId"] = item["parentId"]
        if body_format == "storage":
            data["body"] = {"storage": {"representation": "storage", "value": item["body"]}}
        if single:
            data["_links"]["base"] = self.site_base
        return data

    def _content(self, cid: str, kind: str) -> Json | None:
        item = self.content.get(cid)
        return item if item is not None and item["kind"] == kind else None

    # -- pages and blog posts ---------------------------------------------------------------

    def _get_many(
        self, request: httpx.Request, kind: str, space: str | None = None
    ) -> httpx.Response:
        q = self._query(request)
        wanted_spaces = set(q["space-id"].split(",")) if "space-id" in q else None
        items = [
            self._content_json(c, q.get("body-format"), single=False)
            for c in self.content.values()
            if c["kind"] == kind
            and c["status"] == "current"
            and (space is None or c["spaceId"] == space)
            and (wanted_spaces is None or c["spaceId"] in wanted_spaces)
            and ("title" not in q or c["title"] == q["title"])
        ]
        return self._list(request, items)

    def getPages(self, request: httpx.Request, op: Operation) -> httpx.Response:
        return self._get_many(request, "page")

    def getBlogPosts(self, request: httpx.Request, op: Operation) -> httpx.Response:
        return self._get_many(request, "blogpost")

    def getPagesInSpace(self, request: httpx.Request, op: Operation, id: str) -> httpx.Response:
        return self._get_many(request, "page", space=id)

    def getBlogPostsInSpace(self, request: httpx.Request, op: Operation, id: str) -> httpx.Response:
        return self._get_many(request, "blogpost", space=id)

    def _get_one(self, request: httpx.Request, cid: str, kind: str) -> httpx.Response:
        item = self._content(cid, kind)
        if item is None:
            return self.error(404, "NOT_FOUND", "Not Found")
        return httpx.Response(
            200, json=self._content_json(item, self._query(request).get("body-format"))
        )

    def getPageById(self, request: httpx.Request, op: Operation, id: str) -> httpx.Response:
        return self._get_one(request, id, "page")

    def getBlogPostById(self, request: httpx.Request, op: Operation, id: str) -> httpx.Response:
        return self._get_one(request, id, "blogpost")

    def _create(self, request: httpx.Request, kind: str) -> httpx.Response:
        data = json.loads(request.content)
        if data["spaceId"] not in self.spaces:
            return self.error(404, "NOT_FOUND", "Space not found")
        item = self.add_content(
            data["spaceId"], data.get("title", ""), data["body"]["value"], kind=kind,
            parent=data.get("parentId") if kind == "page" else None,
        )  # fmt: skip
        item["status"] = data.get("status", "current")
        return httpx.Response(200, json=self._content_json(item, "storage"))

    def createPage(self, request: httpx.Request, op: Operation) -> httpx.Response:
        return self._create(request, "page")

    def createBlogPost(self, request: httpx.Request, op: Operation) -> httpx.Response:
        return self._create(request, "blogpost")

    def _update(self, request: httpx.Request, cid: str, kind: str) -> httpx.Response:
        if self.before_put is not None:
            self.before_put(cid)
        item = self._content(cid, kind)
        if item is None:
            return self.error(404, "NOT_FOUND", "Not Found")
        data = json.loads(request.content)
        current = item["versions"][-1]["number"]
        provided = data["version"]["number"]
        if provided != current + 1:
            return self.error(
                409, "CONFLICT",
                "Version must be incremented when updating a page. "
                f"Current Version: [{current}]. Provided version: [{provided}]",
            )  # fmt: skip
        item["title"], item["body"] = data["title"], data["body"]["value"]
        item["versions"].append(self._version(provided, data["version"].get("message", ""), "app"))
        return httpx.Response(200, json=self._content_json(item, "storage"))

    def updatePage(self, request: httpx.Request, op: Operation, id: str) -> httpx.Response:
        return self._update(request, id, "page")

    def updateBlogPost(self, request: httpx.Request, op: Operation, id: str) -> httpx.Response:
        return self._update(request, id, "blogpost")

    def _delete(self, request: httpx.Request, cid: str, kind: str) -> httpx.Response:
        item = self._content(cid, kind)
        if item is None:
            return self.error(404, "NOT_FOUND", "Not Found")
        if self._query(request).get("purge") == "true":
            if item["status"] != "trashed":
                return self.error(
                    400, "INVALID_REQUEST_PARAMETER", "Only trashed content can be purged"
                )
            del self.content[cid]
        else:
            item["status"] = "trashed"
        return httpx.Response(204)

    def deletePage(self, request: httpx.Request, op: Operation, id: str) -> httpx.Response:
        return self._delete(request, id, "page")

    def deleteBlogPost(self, request: httpx.Request, op: Operation, id: str) -> httpx.Response:
        return self._delete(request, id, "blogpost")

    def getPageDirectChildren(
        self, request: httpx.Request, op: Operation, id: str
    ) -> httpx.Response:
        kids = [
            {"id": c["id"], "status": "current", "title": c["title"], "type": "page",
             "spaceId": c["spaceId"], "childPosition": n}
            for n, c in enumerate(c for c in self.content.values() if c.get("parentId") == id)
        ]  # fmt: skip
        return self._list(request, kids)

    def getPageVersions(self, request: httpx.Request, op: Operation, id: str) -> httpx.Response:
        item = self.content[id]
        versions = [
            {**v, "page": {"id": id, "title": item["title"], "body": {}}}
            for v in reversed(item["versions"])
        ]
        return self._list(request, versions)

    # -- spaces -----------------------------------------------------------------------------

    def getSpaces(self, request: httpx.Request, op: Operation) -> httpx.Response:
        keys = self._query(request).get("keys")
        wanted = set(keys.split(",")) if keys else None
        spaces = [s for s in self.spaces.values() if wanted is None or s["key"] in wanted]
        return self._list(request, spaces)

    def getSpaceById(self, request: httpx.Request, op: Operation, id: str) -> httpx.Response:
        if id not in self.spaces:
            return self.error(404, "NOT_FOUND", "Space not found")
        return httpx.Response(
            200, json={**self.spaces[id], "_links": {"webui": "/s", "base": self.site_base}}
        )

    def createSpace(self, request: httpx.Request, op: Operation) -> httpx.Response:
        data = json.loads(request.content)
        space = self.add_space(data.get("key") or data["alias"], data["name"])
        return httpx.Response(201, json=space)

    # -- comments ---------------------------------------------------------------------------

    def _comment_json(self, c: Json, body_format: str | None = "storage") -> Json:
        hidden = ("kind", "value", "selection", "number", "message", "resolved")
        data = {k: v for k, v in c.items() if k not in hidden}
        data["version"] = self._version(c.get("number", 1), c.get("message", ""), AUTHOR)
        data["body"] = (
            {"storage": {"representation": "storage", "value": c["value"]}} if body_format else {}
        )
        data["_links"] = {"webui": f"/c/{c['id']}"}
        if c["kind"] == "inline":
            data["resolutionStatus"] = "resolved" if c.get("resolved") else "open"
            data["properties"] = {"inlineMarkerRef": f"m-{c['id']}"}
            if c.get("selection") is not None:
                data["properties"]["inlineOriginalSelection"] = c["selection"]
        return data

    def _page_comments(
        self, request: httpx.Request, cid: str, kind: str, key: str
    ) -> httpx.Response:
        fmt = self._query(request).get("body-format")
        items = [
            self._comment_json(c, fmt)
            for c in self.comments.values()
            if c["kind"] == kind and c.get(key) == cid and "parentCommentId" not in c
        ]
        if kind == "footer":
            for item in items:  # PageCommentModel has no parentCommentId/blogPostId
                item.pop("blogPostId", None)
        return self._list(request, items)

    def getPageFooterComments(
        self, request: httpx.Request, op: Operation, id: str
    ) -> httpx.Response:
        return self._page_comments(request, id, "footer", "pageId")

    def getBlogPostFooterComments(
        self, request: httpx.Request, op: Operation, id: str
    ) -> httpx.Response:
        return self._page_comments(request, id, "footer", "blogPostId")

    def getPageInlineComments(
        self, request: httpx.Request, op: Operation, id: str
    ) -> httpx.Response:
        return self._page_comments(request, id, "inline", "pageId")

    def getFooterCommentChildren(
        self, request: httpx.Request, op: Operation, id: str
    ) -> httpx.Response:
        items = [
            self._comment_json(c) for c in self.comments.values() if c.get("parentCommentId") == id
        ]
        return self._list(request, items)

    def _comment_by_id(self, cid: str, kind: str) -> httpx.Response:
        c = self.comments.get(cid)
        if c is None or c["kind"] != kind:
            return self.error(404, "NOT_FOUND", "Comment not found")
        return httpx.Response(
            200, json={**self._comment_json(c), "_links": {"webui": "/c", "base": self.site_base}}
        )

    def getFooterCommentById(
        self, request: httpx.Request, op: Operation, comment_id: str
    ) -> httpx.Response:
        return self._comment_by_id(comment_id, "footer")

    def getInlineCommentById(
        self, request: httpx.Request, op: Operation, comment_id: str
    ) -> httpx.Response:
        return self._comment_by_id(comment_id, "inline")

    def _new_comment(self, request: httpx.Request, kind: str) -> httpx.Response:
        data = json.loads(request.content)
        parent = data.get("parentCommentId")
        if parent is not None and parent not in self.comments:
            return self.error(404, "NOT_FOUND", "Parent comment not found")
        cid = self.new_id()
        comment = {
            "kind": kind,
            "id": cid,
            "status": "current",
            "title": "Re: page",
            "value": data["body"]["value"],
        }
        for key in ("pageId", "blogPostId", "attachmentId", "parentCommentId"):
            if key in data:
                comment[key] = data[key]
        if parent is not None:
            comment.setdefault("pageId", self.comments[parent].get("pageId"))
        if kind == "inline" and parent is None:
            props = data["inlineCommentProperties"]
            page = self.content[data["pageId"]]
            if (
                count_matches(page["body"], props["textSelection"])
                != props["textSelectionMatchCount"]
            ):
                return self.error(
                    400, "INVALID_REQUEST_PARAMETER", "Match count does not agree with the page"
                )
            comment["selection"] = props["textSelection"]
        self.comments[cid] = {k: v for k, v in comment.items() if v is not None}
        body = {
            **self._comment_json(self.comments[cid]),
            "_links": {"webui": "/c", "base": self.site_base},
        }
        location = f"{self.site_base}/api/v2/{kind}-comments/{cid}"
        return httpx.Response(201, json=body, headers={"Location": location})

    def createFooterComment(self, request: httpx.Request, op: Operation) -> httpx.Response:
        return self._new_comment(request, "footer")

    def createInlineComment(self, request: httpx.Request, op: Operation) -> httpx.Response:
        return self._new_comment(request, "inline")

    def _update_comment(self, request: httpx.Request, cid: str, kind: str) -> httpx.Response:
        if self.before_put is not None:
            self.before_put(cid)
        c = self.comments.get(cid)
        if c is None or c["kind"] != kind:
            return self.error(404, "NOT_FOUND", "Comment not found")
        data = json.loads(request.content)
        current, provided = c.get("number", 1), data["version"]["number"]
        if provided != current + 1:
            return self.error(
                409,
                "CONFLICT",
                f"Current Version: [{current}]. Provided version: [{provided}]",
            )
        c.update(number=provided, message=data["version"].get("message", ""))
        c["value"] = data["body"]["value"]
        if "resolved" in data:
            c["resolved"] = data["resolved"]
        body = {**self._comment_json(c), "_links": {"webui": "/c", "base": self.site_base}}
        return httpx.Response(200, json=body)

    def updateFooterComment(
        self, request: httpx.Request, op: Operation, comment_id: str
    ) -> httpx.Response:
        return self._update_comment(request, comment_id, "footer")

    def updateInlineComment(
        self, request: httpx.Request, op: Operation, comment_id: str
    ) -> httpx.Response:
        return self._update_comment(request, comment_id, "inline")

    def user_edits_comment(self, cid: str, value: str) -> None:
        c = self.comments[cid]
        c.update(number=c.get("number", 1) + 1, message="user edit", value=value)

    def _delete_comment(self, cid: str, kind: str) -> httpx.Response:
        c = self.comments.get(cid)
        if c is None or c["kind"] != kind:
            return self.error(404, "NOT_FOUND", "Comment not found")
        del self.comments[cid]
        return httpx.Response(204)

    def deleteFooterComment(
        self, request: httpx.Request, op: Operation, comment_id: str
    ) -> httpx.Response:
        return self._delete_comment(comment_id, "footer")

    def deleteInlineComment(
        self, request: httpx.Request, op: Operation, comment_id: str
    ) -> httpx.Response:
        return self._delete_comment(comment_id, "inline")

    # -- attachments and labels -------------------------------------------------------------

    def add_attachment(self, page_id: str, title: str) -> Json:
        aid = f"att{self.new_id()}"
        self.attachments[aid] = {
            "id": aid, "status": "current", "title": title, "createdAt": STAMP, "pageId": page_id,
            "mediaType": "text/plain", "mediaTypeDescription": "Text", "comment": "",
            "fileId": f"file-{aid}", "fileSize": 42, "webuiLink": "/w", "downloadLink": "/d",
            "version": self._version(1, "", AUTHOR), "_links": {"webui": "/w", "download": "/d"},
        }  # fmt: skip
        return self.attachments[aid]

    def getAttachments(self, request: httpx.Request, op: Operation) -> httpx.Response:
        return self._list(request, list(self.attachments.values()), default_limit=50)

    def getPageAttachments(self, request: httpx.Request, op: Operation, id: str) -> httpx.Response:
        items = [a for a in self.attachments.values() if a["pageId"] == id]
        return self._list(request, items, default_limit=50)

    def getAttachmentById(self, request: httpx.Request, op: Operation, id: str) -> httpx.Response:
        if id not in self.attachments:
            return self.error(404, "NOT_FOUND", "Attachment not found")
        return httpx.Response(200, json=self.attachments[id])

    def deleteAttachment(self, request: httpx.Request, op: Operation, id: str) -> httpx.Response:
        if self.attachments.pop(f"att{id}", None) is None:
            return self.error(404, "NOT_FOUND", "Attachment not found")
        return httpx.Response(204)

    def add_label(self, name: str, *, page: str | None = None, space: str | None = None) -> Json:
        lid = self.new_id()
        self.labels[lid] = {"id": lid, "name": name, "prefix": "global"}
        if page:
            self.content_labels.setdefault(page, []).append(lid)
        if space:
            self.space_labels.setdefault(space, []).append(lid)
        return self.labels[lid]

    def getLabels(self, request: httpx.Request, op: Operation) -> httpx.Response:
        return self._list(request, list(self.labels.values()))

    def getPageLabels(self, request: httpx.Request, op: Operation, id: str) -> httpx.Response:
        return self._list(request, [self.labels[i] for i in self.content_labels.get(id, [])])

    def getSpaceLabels(self, request: httpx.Request, op: Operation, id: str) -> httpx.Response:
        return self._list(request, [self.labels[i] for i in self.space_labels.get(id, [])])

    # -- v1 search --------------------------------------------------------------------------

    def _v1_page(self, request: httpx.Request, results: list[Json], path: str) -> httpx.Response:
        q = self._query(request)
        limit = int(q.get("limit", 25))
        start = int(q.get("start", 0))
        chunk = results[start : start + limit]
        links: Json = {
            "base": self.site_base,
            "context": "/wiki",
            "self": f"{self.site_base}{path}",
        }
        if start + limit < len(results):
            rest = {k: v for k, v in q.items() if k not in ("start", "cursor", "next")}
            if path == "/rest/api/search":
                token = base64.urlsafe_b64encode(
                    json.dumps({"offset": start + limit}).encode()
                ).decode()
                links["next"] = f"{path}?next=true&cursor={token}&" + urlencode(
                    {**rest, "start": start + limit}
                )
            else:
                links["next"] = f"{path}?" + urlencode({**rest, "start": start + limit})
        body = {
            "results": chunk, "start": start, "limit": limit, "size": len(chunk),
            "totalSize": len(results), "cqlQuery": q["cql"], "searchDuration": 7, "_links": links,
        }  # fmt: skip
        return httpx.Response(200, json=body)

    @staticmethod
    def _search_hit(c: Json) -> Json:
        return {
            "content": {
                "id": c["id"],
                "type": c["kind"],
                "status": "current",
                "title": c["title"],
                "_links": {"webui": "/p"},
            },
            "title": c["title"],
            "excerpt": "...",
            "url": f"/spaces/x/pages/{c['id']}",
            "entityType": "content",
            "iconCssClass": "aui-icon content-type-page",
            "lastModified": STAMP,
            "friendlyLastModified": "just now",
            "breadcrumbs": [],
            "score": 1.0,
        }

    def searchByCQL(self, request: httpx.Request, op: Operation) -> httpx.Response:
        cql = self._query(request)["cql"]
        if "~" not in cql and "=" not in cql:
            return self.error(400, "INVALID_CQL", "Could not parse cql : " + cql)
        hits = [self._search_hit(c) for c in self.content.values() if c["status"] == "current"]
        return self._v1_page(request, hits, "/rest/api/search")

    def searchUser(self, request: httpx.Request, op: Operation) -> httpx.Response:
        hits = [
            {
                "user": u,
                "title": u["displayName"],
                "excerpt": "",
                "url": "/people",
                "entityType": "user",
                "iconCssClass": "aui-icon content-type-profile",
                "lastModified": STAMP,
                "breadcrumbs": [],
            }
            for u in self.users
        ]
        return self._v1_page(request, hits, "/rest/api/search/user")
