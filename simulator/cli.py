"""``reactor sim``: serve one simulated Confluence site until interrupted."""

from __future__ import annotations

import secrets
from pathlib import Path

from simulator.clock import Clock
from simulator.demo import seed
from simulator.site import DEFAULT_EMAIL, build


def run(
    *,
    port: int = 8090,
    host: str = "127.0.0.1",
    api_token: str | None = None,
    state: Path | None = None,
    public_url: str | None = None,
    app_quota: int = 65_000,
    time_scale: float = 1.0,
    demo: bool = False,
    install_app: str | None = None,
    install_forge: tuple[str, str] | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
) -> int:
    import uvicorn

    from simulator.main import create_app

    token = api_token or secrets.token_urlsafe(18)
    scheme = "https" if ssl_certfile else "http"
    url = (public_url or f"{scheme}://{host}:{port}").rstrip("/")
    sim = build(
        api_token=token,
        state_path=state,
        public_url=url,
        app_quota=app_quota,
        clock=Clock(scale=time_scale),
    )
    if demo:
        seed(sim)
    print(f"simulator  {url}/wiki  (admin API {url}/_sim/)", flush=True)
    print(f"user       {DEFAULT_EMAIL}", flush=True)
    print(f"api token  {token}", flush=True)
    print(f"cloud id   {sim.store.cloud_id}", flush=True)
    uvicorn.run(
        create_app(sim, install_app=install_app, install_forge=install_forge),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        server_header=False,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )
    return 0
