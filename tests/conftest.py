import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Hermetic caches: trained tokenizers and encoded corpora go to a per-session folder.
os.environ.setdefault("MASKLAB_CACHE", tempfile.mkdtemp(prefix="masklab-test-cache-"))

import pytest  # noqa: E402
import torch  # noqa: E402

CORPUS_DOCS = [
    "def add(a, b):\n    return a + b\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n"
    "    def push(self, x):\n        self.items.append(x)\n",
    "import os\nprint(os.getcwd())\n",
    "for i in range(10):\n    if i % 2 == 0:\n        print(i)\n",
] * 6


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    """A folder of .txt and .jsonl files with a few kB of Python-like text."""
    import json

    root = tmp_path_factory.mktemp("corpus")
    for i, doc in enumerate(CORPUS_DOCS[:12]):
        (root / f"doc{i}.txt").write_text(doc * 4)
    with open(root / "more.jsonl", "w") as f:
        for doc in CORPUS_DOCS[12:]:
            f.write(json.dumps({"text": doc * 4}) + "\n")
    return root


@pytest.fixture
def one_thread():
    """Tiny matmuls: one intra-op thread avoids OpenMP spin-waits on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
