"""Semantic descriptors: masks as text (Text4Seg, Lan et al., ICLR 2025; Text4Seg++, Lan et al., 2025).

Text4Seg (Sec. 3.1) splits the image into a grid of patches (16x16 by default; 24 and 32 in its ablations) and
writes one text label per patch, row by row. Row-wise run-length encoding (R-RLE, Sec. 3.2) compresses each
row separately. The text is written exactly as Text4Seg's data scripts write it (``encode_mask`` in
``ms-swift/data/utils.py`` of github.com/mc-lan/Text4Seg):

    <seg>others *14| dog *2
     others *12| dog *4
     ...
    </seg>

* a run is ``label *count``; runs are joined by ``"| "``;
* rows are joined by ``"\\n "`` (a newline and a space), and a newline follows the last row;
* everything sits inside ``<seg>`` ... ``</seg>``.

Without R-RLE (``rle=False``) the descriptors are the paper's plain sequence: every patch label, row after row,
joined by ``"|"`` on one line, ``<seg>others|others|dog|...</seg>``, which is the string Text4Seg's evaluation
(``decode_mask`` in ``llava/eval/utils.py``) turns R-RLE back into before it reads the labels. Labels must be
non-empty, without ``|``, ``*``, ``<``, ``>`` or newlines, and without leading or trailing spaces (those
characters are the format's separators).

Resizing, as the reference code does it:

* ``mask_to_grid`` (mask -> grid): PIL's nearest-neighbour resize, ``Image.resize((grid, grid),
  Image.NEAREST)`` in the data scripts (``create_refcoco_llava.py``): cell i reads pixel ``int(x_i)`` with
  ``x_0 = H / grid / 2`` and ``x_{i+1} = x_i + H / grid`` in float64 (Pillow's ``ImagingScaleAffine``), any
  H x W. ``resize="majority"`` instead takes the majority label of each cell of the partition
  ``[floor(i H / grid), floor((i + 1) H / grid))``; a tie goes to the smaller class id.
* ``grid_to_mask`` (grid -> pixels): ``torch.nn.functional.interpolate(mode="nearest")`` on a float64 map, the
  call of the evaluation (``model_refer_seg.py``). torch itself is called: its index rounding depends on the
  kernel it picks (float32 or float64 index arithmetic), so a re-implementation matches it for most sizes but
  not all (8 of 798 grid/size pairs differ at a cell boundary on torch 2.13).

Box-wise bricks (Text4Seg++, box-wise semantic descriptors) cut arbitrary boxes, so their cells use the uneven
partition ``[floor(i * h / g), floor((i + 1) * h / g))`` and the grid shrinks to the box when the box is smaller
than the grid. masklab writes a brick as ``<p>label</p><box>[x1, y1, x2, y2]</box><seg>...</seg>`` with pixel
coordinates (end exclusive) and R-RLE cells ``1`` (object) / ``0`` (not); this is masklab's serialization of the
idea, not a byte format published with the paper."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby

import numpy as np
import torch

__all__ = [
    "GRIDS",
    "mask_to_grid",
    "encode_descriptors",
    "decode_descriptors",
    "Decoded",
    "grid_to_mask",
    "Brick",
    "mask_to_brick",
    "brick_to_mask",
    "encode_bricks",
    "decode_bricks",
]

GRIDS = (16, 24, 32)  # grid sizes studied by Text4Seg (Table 6); others are accepted
_FORBIDDEN = re.compile(r"[|*<>\n\r]")


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def check_label(label: str) -> str:
    if not isinstance(label, str) or not label or label != label.strip() or _FORBIDDEN.search(label):
        raise ValueError(
            f"a descriptor label must be non-empty, without |*<> or newlines or outer spaces, got {label!r}"
        )
    return label


# --------------------------------------------------------------------------------------------- grids
def mask_to_grid(
    mask,
    grid: int = 16,
    label: str | Mapping[int, str] | Sequence[str] = "object",
    background: str = "others",
    resize: str = "nearest",
) -> np.ndarray:
    """Grid [grid, grid] of text labels from a mask of any size H x W.

    ``mask`` is a binary mask [H, W] (nonzero = ``label``, zero = ``background``) when ``label`` is a str, or
    an integer label map [H, W] when ``label`` maps class ids to names (a dict, or a sequence indexed by id).
    ``resize="nearest"`` (Text4Seg's data scripts: PIL nearest) reads one pixel per cell; ``"majority"`` votes
    over the cell's pixels (it needs H, W >= grid).
    """
    m = _np(mask)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"mask must be a non-empty [H, W] array, got shape {m.shape}")
    if isinstance(grid, bool) or not isinstance(grid, int | np.integer) or grid < 1:
        raise ValueError(f"grid must be a positive int, got {grid!r}")
    if resize not in ("nearest", "majority"):
        raise ValueError(f"resize must be 'nearest' or 'majority', got {resize!r}")
    names, ids = _class_ids(m, label, background)
    H, W = m.shape
    if resize == "nearest":
        winner = ids[_pil_nearest(H, grid)[:, None], _pil_nearest(W, grid)[None, :]]
        return np.asarray(names, dtype=object)[winner].astype(str)
    if H < grid or W < grid:
        raise ValueError(f"resize='majority' needs a pixel in every cell: the {H}x{W} mask is smaller than grid {grid}")
    K = len(names)
    rows = np.searchsorted(_bounds(H, grid), np.arange(H), side="right") - 1  # (H,) cell row of each pixel row
    cols = np.searchsorted(_bounds(W, grid), np.arange(W), side="right") - 1
    cell = rows[:, None] * grid + cols[None, :]  # (H, W)
    votes = np.bincount((cell * K + ids).ravel(), minlength=grid * grid * K).reshape(grid * grid, K)
    winner = votes.argmax(1)  # ties -> smallest class id
    return np.asarray(names, dtype=object)[winner].reshape(grid, grid).astype(str)


def _class_ids(m: np.ndarray, label, background: str) -> tuple[list[str], np.ndarray]:
    """(names of the classes present, dense class ids 0..K-1 per pixel in increasing class-id order)."""
    if isinstance(label, str):
        return [check_label(background), check_label(label)], (m != 0).astype(np.int64)
    table = dict(label) if isinstance(label, Mapping) else dict(enumerate(label))
    if not np.issubdtype(m.dtype, np.integer) and m.dtype != np.bool_:
        raise ValueError(f"a label map must hold integer class ids, got dtype {m.dtype}")
    present = np.unique(m)
    missing = [int(v) for v in present if int(v) not in table]
    if missing:
        raise ValueError(f"label map holds class ids {missing} that have no name in label")
    return [check_label(table[int(v)]) for v in present], np.searchsorted(present, m)


def _pil_nearest(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each of n_out cells in PIL's nearest resize (Pillow ``ImagingScaleAffine``): the position
    starts at half a step and adds one step (n_in / n_out) per cell in float64, truncated to an int."""
    step = n_in / n_out
    x = np.cumsum(np.r_[step * 0.5, np.full(n_out - 1, step)])  # sequential float64 sums, as Pillow's loop
    return np.minimum(x.astype(np.int64), n_in - 1)


def grid_to_mask(
    grid,
    size: tuple[int, int],
    label: str | Mapping[str, int] | Sequence[str] | None = None,
    background: str = "others",
) -> np.ndarray:
    """Upsample a label grid to pixels [H, W] with torch's nearest interpolation (Text4Seg's evaluation).

    ``label=None``: bool mask of cells that are not ``background``; a str: bool mask of that label; a dict
    name -> id or a sequence of names: int64 label map (a name it does not list raises ``ValueError``).
    """
    g = np.asarray(grid, dtype=str)
    if g.ndim != 2 or g.size == 0:
        raise ValueError(f"grid must be a non-empty 2-D array of labels, got shape {g.shape}")
    H, W = (int(s) for s in size)
    if H < 1 or W < 1:
        raise ValueError(f"size must be positive (H, W), got {size}")
    if label is None:
        cells = g != background
    elif isinstance(label, str):
        cells = g == label
    else:
        table = dict(label) if isinstance(label, Mapping) else {n: i for i, n in enumerate(label)}
        unknown = sorted(set(g.ravel().tolist()) - set(table))
        if unknown:
            raise ValueError(f"grid holds labels {unknown} that label does not map to ids")
        cells = np.vectorize(table.__getitem__, otypes=[np.int64])(g)
    return cells.ravel()[_torch_nearest(g.shape, (H, W))]


def _torch_nearest(shape: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """[H, W] flat cell index of every pixel: F.interpolate(mode="nearest") of the cell numbers as a float64
    [1, 1, rows, cols] map, as Text4Seg's evaluation upsamples its prediction (exact: float64 holds them)."""
    import torch.nn.functional as F

    cells = torch.arange(shape[0] * shape[1], dtype=torch.float64).reshape(1, 1, *shape)
    return F.interpolate(cells, size=size, mode="nearest")[0, 0].long().numpy()


# --------------------------------------------------------------------------------------------- text
def encode_descriptors(grid, rle: bool = True) -> str:
    """Text4Seg text of a label grid: R-RLE rows (``label *count`` runs) or, with ``rle=False``, the plain
    single line of every label joined by ``"|"``."""
    g = np.asarray(grid, dtype=str)
    if g.ndim != 2 or g.size == 0:
        raise ValueError(f"grid must be a non-empty 2-D array of labels, got shape {g.shape}")
    for lab in np.unique(g):
        check_label(str(lab))
    if not rle:
        return "<seg>" + "|".join(g.ravel().tolist()) + "</seg>"
    rows = ["| ".join(f"{lab} *{sum(1 for _ in run)}" for lab, run in groupby(row)) for row in g.tolist()]
    return "<seg>" + "\n ".join(rows) + "\n</seg>"


@dataclass(frozen=True)
class Decoded:
    """A decoded descriptor grid and, in lenient mode, what was repaired to get it (empty when nothing
    was)."""

    grid: np.ndarray  # (rows, cols) str
    repairs: tuple[str, ...] = field(default=())


_TOKEN = re.compile(r"^(?P<label>.*?) \*(?P<count>\d+)$")


def decode_descriptors(
    text: str,
    strict: bool = True,
    labels: Sequence[str] | None = None,
    shape: tuple[int, int] | None = None,
    background: str = "others",
) -> Decoded:
    """Read Text4Seg descriptors (R-RLE or plain) back into a label grid.

    The text may hold other words around its one ``<seg>...</seg>`` block. ``labels`` lists the allowed labels
    (``None``: any); ``shape`` the expected (rows, cols). A block with no newline and no ``*`` is the plain
    single line: its cells fill ``shape`` row by row, or a square grid when ``shape`` is not given.

    strict: any deviation from the format raises ``ValueError`` naming the character position (from the start
    of ``text``): missing tags or final newline, a malformed run or count, an unknown label, ragged rows, a
    wrong shape (a plain line whose cell count is not ``shape``'s, or not a square without ``shape``).
    lenient: repairs and reports instead; tags may be missing, separators may carry extra spaces, a bad count
    reads as 1, unknown labels become ``background``, rows are padded with ``background`` or truncated to the
    expected width (``shape`` or else the most common row width), and missing rows are padded with background;
    a plain line is padded with ``background`` or truncated to ``shape`` (or the smallest square that holds it).
    """
    if not isinstance(text, str):
        raise ValueError(f"descriptor text must be a str, got {type(text).__name__}")
    if strict:
        return Decoded(_decode_strict(text, labels, shape))
    return _decode_lenient(text, labels, shape, background)


# Model output is untrusted: the cells of a row are bounded by this number, far above Text4Seg's 16-64 cell rows,
# before anything is allocated (a lenient decode then truncates to the grid width as for any long row).
MAX_ROW_CELLS = 4096


def _decode_strict(text: str, labels, shape) -> np.ndarray:
    begin = text.find("<seg>")
    if begin < 0:
        raise ValueError("no '<seg>' tag in the descriptor text (position 0)")
    if text.find("<seg>", begin + 1) >= 0:
        raise ValueError(f"a second '<seg>' tag at position {text.find('<seg>', begin + 1)}")
    end = text.find("</seg>", begin)
    if end < 0:
        raise ValueError(f"no '</seg>' after the '<seg>' at position {begin}")
    body_at = begin + 5
    body = text[body_at:end]
    if "\n" not in body and "*" not in body:
        return _decode_plain_strict(body, body_at, labels, shape)
    if not body.endswith("\n"):
        raise ValueError(f"the last row must end with a newline before '</seg>' (position {end})")
    allowed = None if labels is None else set(labels)
    rows: list[list[str]] = []
    pos = body_at
    for r, row in enumerate(body[:-1].split("\n ")):
        cells: list[str] = []
        tpos = pos
        for token in row.split("| "):
            m = _TOKEN.match(token)
            lab, count = (m["label"], m["count"]) if m else (token, None)
            if not lab or lab != lab.strip() or _FORBIDDEN.search(lab):
                raise ValueError(f"malformed run {token!r} in row {r} at position {tpos}")
            if count is not None and (int(count) == 0 or count[0] == "0"):
                raise ValueError(
                    f"run count must be a positive int without leading zeros, got {count!r} "
                    f"at position {tpos + len(lab) + 2}"
                )
            if allowed is not None and lab not in allowed:
                raise ValueError(f"unknown label {lab!r} in row {r} at position {tpos}")
            n = 1 if count is None else int(count)
            if len(cells) + n > MAX_ROW_CELLS:
                raise ValueError(f"row {r} has more than {MAX_ROW_CELLS} cells (run {token!r} at position {tpos})")
            cells.extend([lab] * n)
            tpos += len(token) + 2
        if rows and len(cells) != len(rows[0]):
            raise ValueError(f"row {r} at position {pos} has {len(cells)} cells, row 0 has {len(rows[0])}")
        rows.append(cells)
        pos += len(row) + 2
    grid = np.asarray(rows, dtype=str)
    if shape is not None and grid.shape != tuple(shape):
        raise ValueError(
            f"descriptor grid is {grid.shape[0]}x{grid.shape[1]}, expected {shape[0]}x{shape[1]} (position {body_at})"
        )
    return grid


def _decode_plain_strict(body: str, body_at: int, labels, shape) -> np.ndarray:
    """The plain line ``label|label|...`` (text position ``body_at``) into (rows, cols)."""
    allowed = None if labels is None else set(labels)
    cells = body.split("|")
    pos = body_at
    for c in cells:
        if not c or c != c.strip() or _FORBIDDEN.search(c):
            raise ValueError(f"malformed label {c!r} in the plain descriptors at position {pos}")
        if allowed is not None and c not in allowed:
            raise ValueError(f"unknown label {c!r} at position {pos}")
        pos += len(c) + 1
    n = len(cells)
    if shape is not None:
        if n != shape[0] * shape[1]:
            raise ValueError(f"plain descriptors hold {n} cells, expected {shape[0]}x{shape[1]} (position {body_at})")
        return np.asarray(cells, dtype=str).reshape(shape)
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"plain descriptors hold {n} cells, not a square grid; give shape (position {body_at})")
    return np.asarray(cells, dtype=str).reshape(side, side)


def _decode_plain_lenient(body: str, labels, shape, background: str, repairs: list[str]) -> Decoded:
    allowed = None if labels is None else set(labels)
    cells = []
    for c in (t.strip() for t in body.split("|")):
        if not c:
            repairs.append("plain line: dropped an empty cell")
            continue
        c = _FORBIDDEN.sub("", c).strip()
        if not c or (allowed is not None and c not in allowed):
            repairs.append(f"plain line: unknown label {c!r} became {background!r}")
            c = background
        cells.append(c)
    if not cells and shape is None:
        repairs.append("no cells: returned an empty grid")
        return Decoded(np.full((0, 0), background, dtype=object).astype(str), tuple(repairs))
    rows, cols = shape if shape is not None else (math.isqrt(len(cells) - 1) + 1,) * 2
    if len(cells) < rows * cols:
        repairs.append(f"plain line: padded {rows * cols - len(cells)} cells with {background!r}")
        cells += [background] * (rows * cols - len(cells))
    elif len(cells) > rows * cols:
        repairs.append(f"plain line: truncated {len(cells) - rows * cols} cells")
        del cells[rows * cols :]
    return Decoded(np.asarray(cells, dtype=str).reshape(rows, cols), tuple(repairs))


def _decode_lenient(text: str, labels, shape, background: str) -> Decoded:
    repairs: list[str] = []
    begin = text.find("<seg>")
    if begin < 0:
        repairs.append("no '<seg>' tag: read the whole text")
        body = text
    else:
        body = text[begin + 5 :]
        end = body.find("</seg>")
        if end < 0:
            repairs.append("no '</seg>' tag: read to the end of the text")
        else:
            body = body[:end]
    if "\n" not in body and "*" not in body and body.strip():
        return _decode_plain_lenient(body, labels, shape, background, repairs)
    allowed = None if labels is None else set(labels)
    rows: list[list[str]] = []
    for r, line in enumerate(ln for ln in body.split("\n") if ln.strip()):
        cells: list[str] = []
        for token in (t.strip() for t in line.split("|")):
            if not token:
                repairs.append(f"row {r}: dropped an empty run")
                continue
            lab, star, count = token.rpartition("*")
            if not star:
                lab, count = token, "1"
            lab, count = lab.strip(), count.strip()
            if not count.isdigit() or int(count) == 0:
                repairs.append(f"row {r}: run {token!r} has no valid count; read as 1")
                lab, count = (lab or token.replace("*", "").strip()), "1"
            lab = _FORBIDDEN.sub("", lab).strip()
            if not lab or (allowed is not None and lab not in allowed):
                repairs.append(f"row {r}: unknown label {lab!r} became {background!r}")
                lab = background
            n = int(count)
            if len(cells) + n > MAX_ROW_CELLS:
                repairs.append(f"row {r}: run {token!r} exceeds {MAX_ROW_CELLS} cells; truncated")
                n = max(MAX_ROW_CELLS - len(cells), 0)
            cells.extend([lab] * n)
        if cells:
            rows.append(cells)
    if not rows:
        repairs.append("no cells: returned an empty grid")
        n_rows, n_cols = shape if shape is not None else (0, 0)
        return Decoded(np.full((n_rows, n_cols), background, dtype=object).astype(str), tuple(repairs))
    width = shape[1] if shape is not None else Counter(len(c) for c in rows).most_common(1)[0][0]
    for r, cells in enumerate(rows):
        if len(cells) < width:
            repairs.append(f"row {r}: padded {width - len(cells)} cells with {background!r}")
            cells.extend([background] * (width - len(cells)))
        elif len(cells) > width:
            repairs.append(f"row {r}: truncated {len(cells) - width} cells")
            del cells[width:]
    if shape is not None and len(rows) != shape[0]:
        if len(rows) < shape[0]:
            repairs.append(f"padded {shape[0] - len(rows)} missing rows with {background!r}")
            rows.extend([[background] * width for _ in range(shape[0] - len(rows))])
        else:
            repairs.append(f"truncated {len(rows) - shape[0]} extra rows")
            del rows[shape[0] :]
    return Decoded(np.asarray(rows, dtype=str), tuple(repairs))


# --------------------------------------------------------------------------------------------- bricks
@dataclass(frozen=True)
class Brick:
    """One object as a box plus a small cell grid inside it (Text4Seg++ box-wise semantic descriptors)."""

    label: str
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels, end exclusive
    cells: np.ndarray  # (gh, gw) bool: the object's majority per cell

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, Brick)
            and self.label == other.label
            and self.box == other.box
            and np.array_equal(self.cells, other.cells)
        )

    __hash__ = None


def _bounds(n: int, g: int) -> np.ndarray:
    """Uneven partition of n pixels into g cells: boundaries floor(i * n / g), i = 0..g."""
    return np.arange(g + 1) * n // g


def mask_to_brick(mask, label: str, grid: int = 16) -> Brick:
    """Brick of a binary mask: its tight box and a majority grid of at most ``grid`` x ``grid`` cells inside
    it."""
    m = _np(mask) != 0
    if m.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {m.shape}")
    if not isinstance(grid, int | np.integer) or grid < 1:
        raise ValueError(f"grid must be a positive int, got {grid!r}")
    check_label(label)
    ys, xs = np.nonzero(m)
    if not len(ys):
        raise ValueError("cannot make a brick of an empty mask (it has no box)")
    y1, y2, x1, x2 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    crop = m[y1:y2, x1:x2].astype(np.int64)
    h, w = crop.shape
    by, bx = _bounds(h, min(grid, h)), _bounds(w, min(grid, w))
    votes = np.add.reduceat(np.add.reduceat(crop, by[:-1], axis=0), bx[:-1], axis=1)
    sizes = np.diff(by)[:, None] * np.diff(bx)[None, :]
    return Brick(label, (x1, y1, x2, y2), 2 * votes > sizes)  # ties -> not the object


def brick_to_mask(brick: Brick, size: tuple[int, int]) -> np.ndarray:
    """Pixels [H, W] (bool) of a brick placed in an image of ``size``; the box is clipped to the image."""
    H, W = (int(s) for s in size)
    x1, y1, x2, y2 = brick.box
    if not (0 <= x1 < x2 and 0 <= y1 < y2):
        raise ValueError(f"brick box must satisfy 0 <= x1 < x2 and 0 <= y1 < y2, got {brick.box}")
    gh, gw = brick.cells.shape
    h, w = y2 - y1, x2 - x1
    if gh > h or gw > w:
        raise ValueError(f"brick grid {gh}x{gw} is larger than its {h}x{w} box")
    out = np.zeros((H, W), dtype=bool)
    ry = np.searchsorted(_bounds(h, gh), np.arange(h), side="right") - 1
    rx = np.searchsorted(_bounds(w, gw), np.arange(w), side="right") - 1
    pix = brick.cells[ry[:, None], rx[None, :]]
    out[y1 : min(y2, H), x1 : min(x2, W)] = pix[: max(0, min(y2, H) - y1), : max(0, min(x2, W) - x1)]
    return out


def encode_bricks(bricks: Sequence[Brick]) -> str:
    """Text of bricks, one per line: ``<p>label</p><box>[x1, y1, x2, y2]</box><seg>R-RLE of 1/0
    cells</seg>``."""
    parts = []
    for b in bricks:
        check_label(b.label)
        cells = np.where(np.asarray(b.cells, dtype=bool), "1", "0")
        box = ", ".join(str(int(v)) for v in b.box)
        parts.append(f"<p>{b.label}</p><box>[{box}]</box>{encode_descriptors(cells)}")
    return "\n".join(parts)


_BRICK = re.compile(r"<p>(?P<label>[^<]*)</p><box>\[(?P<box>[^\]]*)\]</box>(?P<seg><seg>.*?</seg>)", re.S)


def decode_bricks(text: str, strict: bool = True) -> list[Brick]:
    """Bricks written by ``encode_bricks``. strict: a malformed brick raises ``ValueError`` with its position;
    lenient: malformed cell grids are repaired (see ``decode_descriptors``) and unreadable bricks are
    skipped."""
    if not isinstance(text, str):
        raise ValueError(f"brick text must be a str, got {type(text).__name__}")
    bricks, pos = [], 0
    for m in _BRICK.finditer(text):
        if strict and text[pos : m.start()].strip():
            raise ValueError(f"unreadable brick text {text[pos : m.start()][:30]!r} at position {pos}")
        pos = m.end()
        try:
            box = tuple(int(v) for v in m["box"].split(","))
            if len(box) != 4:
                raise ValueError(f"a box needs 4 numbers, got {m['box']!r}")
            cells = decode_descriptors(m["seg"], strict=strict, labels=("0", "1"), background="0").grid
            brick = Brick(check_label(m["label"]), box, cells == "1")
            brick_to_mask(brick, (1, 1))  # validates the box against its grid
        except ValueError as e:
            if strict:
                raise ValueError(f"brick at position {m.start()}: {e}") from None
            continue
        bricks.append(brick)
    if strict and text[pos:].strip():
        raise ValueError(f"unreadable brick text {text[pos:][:30]!r} at position {pos}")
    return bricks
