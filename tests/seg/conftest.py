import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The suite runs on 2 shared cores where torch's thread pool thrashes: seg tests run single-threaded."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
