"""``reactor jwt qsh`` and ``reactor jwt verify``: see what a Connect token is bound to, and why
it is or is not valid for a given request. Printing only; no network, no settings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import TextIO
from urllib.parse import parse_qsl

from app.atlassian.connect_jwt import TokenRejected, parse_token, verify_connect_token
from app.atlassian.qsh import canonical_request_for_url, hash_canonical_request, split_url
from app.cli import non_negative_int


def _configured_leeway() -> int:
    """The service's ``REACTOR_JWT_LEEWAY_SECONDS`` when set to a whole number, else 30."""
    raw = os.environ.get("REACTOR_JWT_LEEWAY_SECONDS", "").strip()
    return int(raw) if raw.isdigit() else 30


def qsh_lines(method: str, url: str, base_url: str | None) -> list[str]:
    """The canonical request and its hash."""
    canonical = canonical_request_for_url(method, url, base_url)
    return [canonical, hash_canonical_request(canonical)]


def token_from_url(url: str) -> str | None:
    for name, value in parse_qsl(split_url(url)[1], keep_blank_values=True):
        if name == "jwt" and value:
            return value
    return None


def verify_lines(
    *,
    secret: str,
    method: str,
    url: str,
    base_url: str | None,
    token: str,
    now: int,
    leeway: int,
) -> tuple[list[str], bool]:
    """Claims, expected canonical request and a verdict; True only for a valid token."""
    lines: list[str] = []
    canonical = canonical_request_for_url(method, url, base_url)
    try:
        parsed = parse_token(token)
        lines.append("header: " + json.dumps(parsed.header, sort_keys=True))
        lines.append("claims: " + json.dumps(parsed.claims, sort_keys=True))
    except TokenRejected:
        pass
    lines.append(f"canonical request: {canonical}")
    lines.append(f"expected qsh: {hash_canonical_request(canonical)}")
    lines.append(f"checked at: {now} (leeway {leeway} s)")
    try:
        verify_connect_token(
            token,
            secret_for=lambda _issuer: secret,
            method=method,
            url=url,
            base_url=base_url,
            now=now,
            leeway=leeway,
        )
    except TokenRejected as exc:
        lines.append(f"verdict: invalid ({exc.code}): {exc.detail}")
        return lines, False
    lines.append("verdict: valid")
    return lines, True


def _bad_url(command: str, args: argparse.Namespace, exc: ValueError) -> int:
    """A URL that cannot be parsed (``http://[::1``): one line naming the option, exit 2."""
    flag = "--url"
    for name, value in (("--url", args.url), ("--base-url", args.base_url)):
        try:
            if value is not None:
                split_url(value)
        except ValueError:
            flag = name
            break
    print(f"reactor jwt {command}: {flag}: not a valid URL ({exc})", file=sys.stderr)
    return 2


def cmd_qsh(args: argparse.Namespace, out: TextIO | None = None) -> int:
    try:
        lines = qsh_lines(args.method, args.url, args.base_url)
    except ValueError as exc:
        return _bad_url("qsh", args, exc)
    for line in lines:
        print(line, file=out or sys.stdout)
    return 0


def cmd_verify(args: argparse.Namespace, out: TextIO | None = None) -> int:
    try:
        token = args.token or token_from_url(args.url)
        if not token:
            print(
                "reactor jwt verify: no TOKEN given and no jwt parameter in --url", file=sys.stderr
            )
            return 2
        lines, valid = verify_lines(
            secret=args.secret,
            method=args.method,
            url=args.url,
            base_url=args.base_url,
            token=token,
            now=int(time.time()) if args.now is None else args.now,
            leeway=args.leeway,
        )
    except ValueError as exc:
        return _bad_url("verify", args, exc)
    for line in lines:
        print(line, file=out or sys.stdout)
    return 0 if valid else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``jwt qsh`` and ``jwt verify`` to the ``reactor`` command."""
    jwt_cmd = sub.add_parser("jwt", help="debug Connect JWTs: query string hash, verification")
    jwt_sub = jwt_cmd.add_subparsers(dest="jwt_command", required=True, metavar="SUBCOMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--method", required=True, help="HTTP method, e.g. POST")
        p.add_argument("--url", required=True, help="the request URL (absolute or path?query)")
        p.add_argument("--base-url", default=None, help="base URL whose path is stripped first")

    qsh = jwt_sub.add_parser("qsh", help="print the canonical request and its hash")
    common(qsh)
    qsh.set_defaults(handler=cmd_qsh)

    verify = jwt_sub.add_parser("verify", help="verify an HS256 Connect token for a request")
    common(verify)
    verify.add_argument("--secret", required=True, help="the tenant's shared secret")
    verify.add_argument(
        "--now", type=non_negative_int, default=None, help="check at this UNIX time"
    )
    verify.add_argument(
        "--leeway",
        type=non_negative_int,
        default=_configured_leeway(),
        help="clock leeway in seconds (default: REACTOR_JWT_LEEWAY_SECONDS, else 30, as the "
        "service)",
    )
    verify.add_argument("token", nargs="?", default=None, help="default: the URL's jwt param")
    verify.set_defaults(handler=cmd_verify)


def main(argv: Sequence[str]) -> int:
    """Run ``jwt ...`` on its own (tests)."""
    parser = argparse.ArgumentParser(prog="reactor")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code
