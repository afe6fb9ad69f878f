"""``reactor sim``: serve one simulated Confluence site until interrupted."""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

from simulator.clock import Clock
from simulator.demo import seed
from simulator.site import DEFAULT_EMAIL, build
from simulator.store import Store


class StateFileError(Exception):
    """The ``--state`` file exists but cannot be read as a simulator site."""


def load_state(path: Path | None) -> Store | None:
    """The site saved in ``path``; None when there is none yet (it is created on save)."""
    if path is None or not path.exists():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StateFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise StateFileError(f"{path} is not a simulator state file (not UTF-8 text)") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise StateFileError(
            f"{path} is not a simulator state file (invalid JSON: {exc})"
        ) from None
    if not isinstance(data, dict):
        raise StateFileError(f"{path} is not a simulator state file (not a JSON object)")
    try:
        return Store.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        problem = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise StateFileError(f"{path} is not a simulator state file ({problem})") from None


# The API token of admin@example.com when --api-token is not given (``reactor dev`` passes it
# this way: a command line is visible to every user of the machine).
SIM_TOKEN_ENV = "REACTOR_SIM_API_TOKEN"  # noqa: S105 - a variable's name


def api_token_of(given: str | None) -> str:
    """The simulator user's API token: ``--api-token``, else ``SIM_TOKEN_ENV``, else new."""
    return given or os.environ.get(SIM_TOKEN_ENV) or secrets.token_urlsafe(18)


def run(
    *,
    port: int = 8090,
    host: str = "127.0.0.1",
    api_token: str | None = None,
    state: Path | None = None,
    public_url: str | None = None,
    app_quota: int = 65_000,
    quota_beta: bool = False,
    time_scale: float = 1.0,
    demo: bool = False,
    install_app: str | None = None,
    install_forge: tuple[str, str] | None = None,
    demo_activity: float = 0.0,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
) -> int:
    import uvicorn

    from simulator.main import create_app

    try:
        store = load_state(state)
    except StateFileError as exc:
        print(f"reactor sim: --state: {exc}", file=sys.stderr)
        return 2
    token = api_token_of(api_token)
    scheme = "https" if ssl_certfile else "http"
    url = (public_url or f"{scheme}://{host}:{port}").rstrip("/")
    sim = build(
        store=store,
        api_token=token,
        state_path=state,
        public_url=url,
        app_quota=app_quota,
        clock=Clock(scale=time_scale),
    )
    sim.limiter.enforce = not quota_beta
    if demo:
        seed(sim)
    print(f"simulator  {url}/wiki  (admin API {url}/_sim/)", flush=True)
    print(f"user       {DEFAULT_EMAIL}", flush=True)
    print(f"api token  {token}", flush=True)
    print(f"cloud id   {sim.store.cloud_id}", flush=True)
    uvicorn.run(
        create_app(
            sim,
            install_app=install_app,
            install_forge=install_forge,
            demo_activity=demo_activity if demo else 0.0,
        ),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        server_header=False,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )
    return 0
