"""Fixtures of the observability tests."""

import pytest

from branchloans.config import Settings


@pytest.fixture
def json_settings(settings: Settings) -> Settings:
    """The run's settings with JSON log lines at INFO, as staging writes them."""
    return settings.model_copy(update={"log_format": "json", "log_level": "INFO"})
