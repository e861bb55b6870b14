"""Corpora: the stdlib views, the hash split, local files and local datasets."""

import pytest

from masklab.data.files import load_corpus, load_files, load_hf_dataset
from masklab.data.stdlib import docstrings, load_stdlib, split_of, stdlib_files


def test_stdlib_excludes_tests_and_site_packages():
    rels = [r for r, _ in stdlib_files()]
    assert len(rels) > 300
    assert not any("/test/" in f"/{r}" or "site-packages" in r or "/tests/" in f"/{r}" for r in rels)
    assert "ast.py" in rels and "json/__init__.py" in rels


def test_split_is_a_function_of_the_path():
    assert split_of("json/decoder.py") == split_of("json/decoder.py")
    share = sum(split_of(f"pkg/m{i}.py") == "valid" for i in range(4000)) / 4000
    assert 0.03 < share < 0.07


def test_stdlib_code_view_and_fingerprint():
    c = load_stdlib("stdlib-code")
    assert len(c.train) > 10 * len(c.valid) > 0
    assert c.fingerprint.startswith("py3.") and c.fingerprint == load_stdlib("stdlib-code").fingerprint
    assert not set(c.train_names) & set(c.valid_names)


def test_docstrings_view():
    src = 'def f():\n    """Hello."""\nclass A:\n    """Class doc."""\n    def g(self):\n        pass\n'
    assert docstrings('"""Mod."""\n' + src) == ["Mod.", "Hello.", "Class doc."]
    assert docstrings("def (:") == []


def test_files_and_folders(small_corpus):
    c = load_corpus(str(small_corpus))
    assert c.train and c.valid
    assert c.fingerprint == load_files(small_corpus).fingerprint
    one = load_corpus(str(small_corpus / "doc0.txt"))
    assert one.train == one.valid  # a one-document corpus validates on its only document


def test_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_corpus(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="no .txt or .jsonl"):
        load_corpus(str(tmp_path))
    (tmp_path / "x.jsonl").write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(ValueError, match="x.jsonl:2"):
        load_corpus(str(tmp_path / "x.jsonl"))
    empty = tmp_path / "e"
    empty.mkdir()
    (empty / "a.txt").write_text("  \n")
    with pytest.raises(ValueError, match="no non-empty"):
        load_corpus(str(empty))
    with pytest.raises(ValueError, match="empty"):
        load_corpus("")


def test_local_hf_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": [f"line {i}" for i in range(50)]}),
            "validation": datasets.Dataset.from_dict({"text": ["held out"]}),
        }
    )
    ds.save_to_disk(tmp_path / "ds")
    c = load_corpus(str(tmp_path / "ds"))
    assert len(c.train) == 50 and c.valid == ["held out"] and c.fingerprint.startswith("hf-")
    single = datasets.Dataset.from_dict({"text": [f"row {i}" for i in range(200)]})
    single.save_to_disk(tmp_path / "single")
    c2 = load_hf_dataset(str(tmp_path / "single"))  # no validation split: hash split of the rows
    assert c2.valid and len(c2.train) + len(c2.valid) == 200
    with pytest.raises(ValueError, match="no text column"):
        load_hf_dataset(str(tmp_path / "single"), text_key="body")
    with pytest.raises(ValueError, match="could not load dataset"):
        load_hf_dataset(str(tmp_path / "nope-not-a-dataset"))
