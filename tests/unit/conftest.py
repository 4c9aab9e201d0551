import os

import pytest

from adplatform.settings import ENV_PREFIX, get_settings


@pytest.fixture(autouse=True)
def _no_session_settings(monkeypatch):
    """Unit tests see only the ADP_* variables they set themselves, never the session's
    service settings (stack_env exports those for in-process Airflow tasks)."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
