from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.atlassian.events import Event, from_connect
from app.settings import Settings

FIXTURES = Path(__file__).parents[1] / "fixtures" / "events"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Test settings with retries in tens of milliseconds instead of minutes."""
    return settings.model_copy(
        update={"retry_delays": "0.05,0.05", "retry_jitter": 0.0, "job_timeout_seconds": 5.0}
    )


def page_event(content: int, version: int, tenant: str = "site-a") -> Event:
    """A Connect page_updated for ``content`` at ``version`` (from the recorded shape)."""
    body = json.loads((FIXTURES / "connect" / "page_updated.json").read_text())
    body["page"]["id"] = content
    body["page"]["version"] = version
    return from_connect(tenant, "page_updated", body)
