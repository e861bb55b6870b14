"""`masklab show seg` writes a PNG with defaults, a mask file, or descriptors."""

import json

import numpy as np
import pytest

from masklab.cli import build_parser
from masklab.seg.descriptors import encode_descriptors
from masklab.seg.rle import rle_encode


def parse(*argv):
    return build_parser().parse_args(["show", "seg", *argv])


def run(args):
    return args.func(args)


def test_defaults_and_inputs(tmp_path):
    run(parse("--out", str(tmp_path / "a.png")))
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = np.zeros((512, 512), bool)
    m[100:300, 50:200] = True
    (tmp_path / "m.json").write_text(json.dumps(rle_encode(m)))
    run(parse("--out", str(tmp_path / "b.png"), "--mask", str(tmp_path / "m.json")))
    g = np.full((16, 16), "others", dtype=object)
    g[4:8, 2:9] = "man"
    (tmp_path / "d.txt").write_text("Sure, " + encode_descriptors(g.astype(str)))
    run(parse("--out", str(tmp_path / "c.png"), "--descriptors", str(tmp_path / "d.txt")))
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError):
        run(parse("--out", str(tmp_path / "a.png"), "--mask", str(tmp_path / "nope.npy")))
    np.save(tmp_path / "small.npy", np.ones((4, 4)))
    with pytest.raises(ValueError, match="image is 512x512"):
        run(parse("--out", str(tmp_path / "a.png"), "--mask", str(tmp_path / "small.npy")))


@pytest.mark.parametrize("name,content", [("bad.npy", b"not numpy"), ("bad.json", b"{not json"), ("o.npy", None)])
def test_a_bad_mask_file_says_what_format_is_expected(tmp_path, name, content):
    path = tmp_path / name
    if content is None:
        np.save(path, np.array([{"a": 1}], dtype=object))  # would need pickle to load
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match="COCO RLE .json .* or a .npy array"):
        run(parse("--out", str(tmp_path / "a.png"), "--mask", str(path)))
