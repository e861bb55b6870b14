"""LazyRows: indexed like a tensor of rows, each row made once."""

import pytest
import torch

from masklab.data.rows import LazyRows


class Squares(LazyRows):
    class layout:
        width = 3

    def __init__(self, n):
        self.n, self.made = n, []

    def _make(self, i):
        self.made.append(i)
        return torch.tensor([i, i * i, -i], dtype=torch.int16)


def test_indexing_matches_a_tensor_of_rows_and_makes_each_row_once():
    rows = Squares(5)
    dense = torch.stack([rows._make(i) for i in range(5)])
    rows.made.clear()
    for idx in (2, -1, slice(1, 4), slice(None, None, 2), torch.tensor([4, 0, 4]), torch.tensor([], dtype=torch.long)):
        assert torch.equal(rows[idx], dense[idx]) or (rows[idx].shape == (0, 3) and dense[idx].numel() == 0)
    assert sorted(rows.made) == [0, 1, 2, 3, 4]  # every row made once, however often it was read
    with pytest.raises(IndexError, match="row 5 out of range for 5 rows"):
        rows[5]


def test_a_row_set_without_make_cannot_be_built():
    class NoMake(LazyRows):
        n = 1

    with pytest.raises(TypeError, match="_make"):
        NoMake()
