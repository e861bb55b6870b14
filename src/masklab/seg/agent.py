"""SegAgent on the canvas world: a click policy that imitates the simulated annotator, with a random walker as the
click-driven segmentation tool.

SegAgent (Zhu et al., CVPR 2025, "Exploring Pixel Understanding Capabilities in MLLMs by Imitating Human Annotator
Trajectories", Sec. 3, HLMAT) casts referring segmentation as a Markov decision process: the state is the image,
the description and the current mask (drawn over the image); the action is one click, ``Positive Point (x, y)`` or
``Negative Point (x, y)`` (reference prompt: ``evaltools/prompt_const.py``); an interactive segmentation tool
(SimpleClick or SAM in the paper) turns all clicks so far into the next mask. Trajectories come from a simulated
annotator that clicks the largest error region (the protocol of :mod:`masklab.seg.clicks`), and the policy is
trained on them by supervised imitation (behaviour cloning, the paper's SFT stage; its StaR and PRM tree search
are not reproduced).

Here the tool is ``skimage.segmentation.random_walker`` (Grady 2006), seeded with the clicks: a positive click
labels a 3 x 3 square as object; negative clicks and the image border (outside those squares) label background.
The policy is a small network, not an MLLM: a convolutional encoder to 8 x 8 image tokens, two transformer blocks
over the image tokens and the expression's tokens (so "left of the 3" can compare places), and a decoder back to
the pixels that scores both actions at every pixel: 2 x H x W logits, one click = one of them.

Shapes: image float [H, W, 3] in [0, 1] (numpy) or [B, 3, H, W] (torch); masks bool [H, W] / [B, H, W]; a click
is :class:`masklab.seg.clicks.Click`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from masklab.data.rows import LazyRows, split_rows, unpack_pixels
from masklab.seg.clicks import Click, simulate
from masklab.seg.metrics import iou as _iou
from masklab.seg.nets import Block, conv_block

__all__ = [
    "walker_segment",
    "oracle_trajectory",
    "oracle_ious",
    "click_is_useful",
    "click_maps",
    "ClickPolicy",
    "AgentLayout",
    "AgentRows",
    "rollout",
]

SEED_RADIUS = 1  # a positive click labels the (2r + 1) x (2r + 1) square around it
BETA = 130.0  # random_walker's edge weight exp(-beta * |dI|^2) (skimage's default)


def walker_segment(image: np.ndarray, clicks: Sequence[Click], beta: float = BETA) -> np.ndarray:
    """The random-walker mask (bool [H, W]) of ``clicks`` on ``image`` (float [H, W, 3]): positive clicks seed the
    object, negative clicks and the border the background. No positive click: an empty mask."""
    from skimage.segmentation import random_walker

    H, W = image.shape[:2]
    labels = np.zeros((H, W), np.int32)
    labels[0, :] = labels[-1, :] = labels[:, 0] = labels[:, -1] = 2
    for c in clicks:
        if not c.positive:
            labels[c.y, c.x] = 2
    pos = [c for c in clicks if c.positive]
    if not pos:
        return np.zeros((H, W), bool)
    r = SEED_RADIUS
    for c in pos:  # after the background seeds: a positive click on the border overrides it
        labels[max(0, c.y - r) : c.y + r + 1, max(0, c.x - r) : c.x + r + 1] = 1
    return random_walker(image, labels, beta=beta, mode="bf", channel_axis=-1) == 1


def oracle_trajectory(image: np.ndarray, gt: np.ndarray, max_clicks: int, stop_at: float):
    """The simulated annotator's trajectory on one object: ([mask before click k], [click k]) for k < T, where T is
    the number of clicks until the IoU reaches ``stop_at`` (or ``max_clicks``). The masks are the random walker's
    answers to the clicks so far (the first is empty)."""
    masks = [np.zeros(gt.shape, bool)]

    def tool(clicks, prev):
        masks.append(walker_segment(image, clicks))
        return masks[-1]

    trace = simulate(tool, gt, max_clicks=max_clicks, stop_at=stop_at)
    return masks[: len(trace.clicks)], list(trace.clicks)


def click_maps(clicks: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 2, S, S) float maps of positive and negative clicks from ``clicks`` (B, K, 3) rows ``(y, x, positive)``,
    unused rows with y = -1."""
    B, K, _ = clicks.shape
    maps = torch.zeros(B, 2, size * size, device=clicks.device)
    used = clicks[..., 0] >= 0
    b = torch.arange(B, device=clicks.device)[:, None].expand(B, K)[used]
    channel = 1 - clicks[..., 2][used].long()  # 0: positive, 1: negative
    where = (clicks[..., 0] * size + clicks[..., 1])[used].long()
    maps[b, channel, where] = 1.0
    return maps.view(B, 2, size, size)


class ClickPolicy(nn.Module):
    """(image, current mask, click maps, expression) -> logits (B, 2 * S * S) of the next click: index
    ``sign * S * S + y * S + x`` with sign 0 positive, 1 negative."""

    def __init__(self, vocab_size: int, prompt_len: int, size: int = 64, width: int = 64, layers: int = 2):
        super().__init__()
        if size % 8:
            raise ValueError(f"size must be a multiple of 8 (three stride-2 stages), got {size}")
        w4 = width // 4
        self.size = size
        self.enc1 = conv_block(6, w4)  # (B, w/4, S, S): RGB, mask, positive and negative clicks
        self.enc2 = conv_block(w4, width // 2, 2)  # (B, w/2, S/2, S/2)
        self.enc3 = conv_block(width // 2, width, 2)  # (B, w, S/4, S/4)
        self.enc4 = conv_block(width, width, 2)  # (B, w, S/8, S/8): the image tokens
        tokens = (size // 8) ** 2
        self.image_pos = nn.Parameter(torch.zeros(1, tokens, width))
        self.word = nn.Embedding(vocab_size, width)
        self.text_pos = nn.Parameter(torch.zeros(1, prompt_len, width))
        self.blocks = nn.ModuleList(Block(width, heads=2) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.dec3 = conv_block(2 * width, width)  # S/4: upsampled tokens + enc3
        self.dec2 = conv_block(width + width // 2, width // 2)  # S/2
        self.dec1 = conv_block(width // 2 + w4, w4)  # S
        self.head = nn.Conv2d(w4, 2, 1)
        nn.init.normal_(self.image_pos, std=0.02)
        nn.init.normal_(self.text_pos, std=0.02)

    def forward(self, pixels, mask, clicks, prompt) -> torch.Tensor:
        """pixels (B, 3, S, S) in [0, 1], mask (B, S, S), clicks (B, K, 3), prompt (B, P) left-padded with 0."""
        S = self.size
        x = torch.cat([pixels - 0.5, mask[:, None].float() - 0.5, click_maps(clicks, S)], 1)  # (B, 6, S, S)
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        e4 = self.enc4(e3)  # (B, w, S/8, S/8)
        B, w, h, _ = e4.shape
        img = e4.flatten(2).transpose(1, 2) + self.image_pos  # (B, N, w)
        seq = torch.cat([img, self.word(prompt) + self.text_pos], 1)  # (B, N + P, w)
        keep = torch.cat([torch.ones(B, img.shape[1], dtype=torch.bool, device=x.device), prompt != 0], 1)
        for block in self.blocks:
            seq = block(seq, keep)
        t = self.norm(seq[:, : img.shape[1]]).transpose(1, 2).reshape(B, w, h, h)
        d3 = self.dec3(torch.cat([F.interpolate(t, scale_factor=2.0, mode="nearest"), e3], 1))
        d2 = self.dec2(torch.cat([F.interpolate(d3, scale_factor=2.0, mode="nearest"), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0, mode="nearest"), e1], 1))
        return self.head(d1).flatten(1)  # (B, 2 S S)


# --------------------------------------------------------------------------------------------- data
class AgentLayout:
    """Slots of a packed trajectory-step row: image bytes (3 S S), the object's mask (S S), the mask before the
    click (S S), the clicks before it (``clicks`` x (y, x, positive), y = -1 unused), the oracle's click (y, x,
    positive) and the expression (``prompt`` ids, left-padded with 0)."""

    def __init__(self, size: int = 64, clicks: int = 8, prompt: int = 8):
        for k, v in (("size", size), ("clicks", clicks), ("prompt", prompt)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{k} must be a positive int, got {v!r}")
        self.size, self.clicks, self.prompt = size, clicks, prompt
        n = size * size
        sizes = {"image": 3 * n, "gt": n, "mask": n, "clicks": 3 * clicks, "target": 3, "prompt": prompt}
        self.spans, at = {}, 0
        for k, m in sizes.items():
            self.spans[k] = (at, at + m)
            at += m
        self.width = at

    def unpack(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        S, part = self.size, split_rows(rows, self)
        return {
            "pixels": unpack_pixels(part["image"], S),
            "gt": part["gt"].view(-1, S, S) != 0,
            "mask": part["mask"].view(-1, S, S) != 0,
            "clicks": part["clicks"].long().view(-1, self.clicks, 3),
            "target": part["target"].long(),
            "prompt": part["prompt"].long(),
        }


class AgentRows(LazyRows):
    """Trajectory steps of the simulated annotator on the examples of one canvas world, packed as int16 rows and
    made when first indexed. Row ``i`` is step ``i % steps`` of example ``i // steps``
    (:func:`masklab.seg.models.rows.example`: a canvas, an expression and the object it names); a trajectory with
    fewer steps wraps around (short trajectories weigh their early clicks more). ``steps=1`` gives the first click
    of each example (the rollouts start from those rows)."""

    def __init__(self, world: int, examples: int, layout: AgentLayout, tokenizer, steps: int, stop_at: float = 0.95):
        if isinstance(examples, bool) or not isinstance(examples, int) or examples < 1:
            raise ValueError(f"examples must be a positive int, got {examples!r}")
        if not 1 <= steps <= layout.clicks:
            raise ValueError(f"steps must be in [1, layout.clicks={layout.clicks}], got {steps}")
        self.world, self.examples, self.layout, self.tok, self.steps, self.stop_at = (
            world, examples, layout, tokenizer, steps, stop_at)  # fmt: skip
        self._trajectories: dict[int, tuple] = {}  # example -> (canvas, object, prompt ids, masks, clicks)

    def __len__(self) -> int:
        return self.examples * self.steps

    def _trajectory(self, j: int) -> tuple:
        """The example's trajectory, walked once for all its steps."""
        from masklab.seg.models.rows import example
        from masklab.seg.models.vocab import encode

        if j not in self._trajectories:
            c, text, n = example(self.world, j, self.layout.size)
            masks, clicks = oracle_trajectory(c.image, c.masks[n], self.layout.clicks, self.stop_at)
            self._trajectories[j] = (c, n, encode(self.tok, text), masks, clicks)
        return self._trajectories[j]

    def _make(self, i: int) -> torch.Tensor:
        L, sp = self.layout, self.layout.spans
        c, n, prompt, masks, clicks = self._trajectory(i // self.steps)
        if len(prompt) > L.prompt:
            raise ValueError(f"the expression of row {i} has {len(prompt)} tokens, more than the slot of {L.prompt}")
        k = (i % self.steps) % len(clicks)
        row = torch.zeros(L.width, dtype=torch.int16)
        row[slice(*sp["image"])] = torch.from_numpy(np.rint(c.image * 255).astype(np.int16).transpose(2, 0, 1).ravel())
        row[slice(*sp["gt"])] = torch.from_numpy(c.masks[n].ravel().astype(np.int16))
        row[slice(*sp["mask"])] = torch.from_numpy(masks[k].ravel().astype(np.int16))
        past = torch.full((L.clicks, 3), -1, dtype=torch.int16)
        for m, p in enumerate(clicks[:k]):
            past[m] = torch.tensor([p.y, p.x, int(p.positive)])
        row[slice(*sp["clicks"])] = past.ravel()
        t = clicks[k]
        row[slice(*sp["target"])] = torch.tensor([t.y, t.x, int(t.positive)], dtype=torch.int16)
        row[sp["prompt"][1] - len(prompt) : sp["prompt"][1]] = torch.tensor(prompt, dtype=torch.int16)
        return row


# --------------------------------------------------------------------------------------------- rollouts
@torch.no_grad()
def rollout(policy: ClickPolicy, batch: dict, max_clicks: int = 20, stop_at: float = 0.9) -> torch.Tensor:
    """IoU after each click (float64 [B, max_clicks]) when ``policy`` clicks and the random walker segments, from an
    empty mask; a row stops once its IoU reaches ``stop_at`` (its later entries repeat the last IoU). The policy
    never clicks a pixel twice (as the simulated user, :func:`masklab.seg.clicks.next_click`)."""
    pixels, gt, prompt = batch["pixels"], batch["gt"], batch["prompt"]
    B, S = gt.shape[0], gt.shape[-1]
    images = pixels.permute(0, 2, 3, 1).cpu().numpy()
    masks = torch.zeros_like(gt)
    clicks = torch.full((B, max_clicks, 3), -1, dtype=torch.long, device=gt.device)
    ious = torch.zeros(B, max_clicks, dtype=torch.float64)
    active = torch.ones(B, dtype=torch.bool)
    for t in range(max_clicks):
        rows = active.nonzero()[:, 0]
        logits = policy(pixels[rows], masks[rows], clicks[rows, : max(t, 1)], prompt[rows]).float()
        taken = click_maps(clicks[rows, : max(t, 1)], S).sum(1).flatten(1) > 0  # (b, S S): either sign
        logits = logits.masked_fill(taken.repeat(1, 2), float("-inf"))
        best = logits.argmax(1)
        for r, a in zip(rows.tolist(), best.tolist(), strict=True):
            sign, y, x = a // (S * S), (a % (S * S)) // S, a % S
            clicks[r, t] = torch.tensor([y, x, 1 - sign])
            done = [Click(int(v[0]), int(v[1]), bool(v[2])) for v in clicks[r, : t + 1].tolist()]
            masks[r] = torch.from_numpy(walker_segment(images[r], done)).to(masks.device)
        ious[:, t] = torch.where(active, _iou(masks, gt).cpu(), ious[:, t - 1] if t else ious[:, 0])
        active &= ious[:, t] < stop_at
        if not active.any():
            ious[:, t + 1 :] = ious[:, t : t + 1]
            break
    return ious


def oracle_ious(image: np.ndarray, gt: np.ndarray, max_clicks: int = 20, stop_at: float = 0.9) -> list[float]:
    """IoU after each click of the simulated annotator with the random walker (the imitation's teacher)."""
    return list(simulate(lambda c, p: walker_segment(image, c), gt, max_clicks=max_clicks, stop_at=stop_at).ious)


def click_is_useful(click: Click, mask: np.ndarray, gt: np.ndarray) -> bool:
    """Whether a click corrects an error under it: positive on a missed object pixel, negative on a false one."""
    return bool(gt[click.y, click.x] and not mask[click.y, click.x]) if click.positive else bool(
        mask[click.y, click.x] and not gt[click.y, click.x])  # fmt: skip
