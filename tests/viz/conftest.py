import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Pictures run their models and masks on one torch thread (the shared `one_thread` fixture)."""
