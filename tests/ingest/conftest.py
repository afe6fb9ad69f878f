"""Ingest tests reuse the Connect app fixture (real Redis, signed installs, app lifespan)."""

from tests.connect.conftest import connect_app, install_key

__all__ = ["connect_app", "install_key"]
