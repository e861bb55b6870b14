"""`masklab show patches STRATEGY --out FILE.png` draws every registered strategy; bad input exits 2."""

import pytest

from masklab.cli import main
from masklab.corrupt.strategies import PATCH


@pytest.mark.parametrize("strategy", PATCH.names())
def test_show_patches_writes_a_png(strategy, tmp_path):
    out = tmp_path / f"{strategy}.png"
    assert main(["show", "patches", strategy, "--out", str(out), "--grid", "8", "--panels", "2"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_patches_bad_ratio_is_a_one_line_error(tmp_path, capsys):
    assert main(["show", "patches", "random", "--out", str(tmp_path / "x.png"), "--ratio", "1.5"]) == 2
    assert capsys.readouterr().err.strip() == "masklab: error: ratio must be in [0, 1], got 1.5"
