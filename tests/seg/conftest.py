import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """The suite runs on 2 shared cores where torch's thread pool thrashes: seg tests run single-threaded."""
