from __future__ import annotations

import pytest

from app.settings import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Test settings with retries in tens of milliseconds instead of minutes."""
    return settings.model_copy(
        update={"retry_delays": "0.05,0.05", "retry_jitter": 0.0, "job_timeout_seconds": 5.0}
    )
