"""Synthetic 2-D skeleton motions with templated captions and exact labels, for LaMP in miniature
(:mod:`masklab.objectives.lamp`).

A stick figure of five joints (root, head, left hand, right hand, foot) moves for ``length`` frames. Each motion
is fixed by four parameters that its caption names exactly, plus a phase the caption leaves free:

- action: ``walk`` (the root drifts along the direction, the foot swings), ``wave`` (the right hand swings out
  along the direction and back), ``jump`` (the whole body hops out along the direction and back);
- direction: left, right, up or down (a unit vector d);
- speed: 1, 2 or 3 cycles per clip ("slowly", "steadily", "quickly"); a walk also covers 0.4 units per cycle;
- amplitude: 0.25, 0.5 or 0.75 units ("small", "medium", "large").

With tau = t / length, omega = 2 pi cycles and phase phi, the moving part is displaced by
``a (1 - cos(omega tau + phi)) / 2 d`` (wave, jump: one-sided, so the direction is identifiable for every phase)
or ``a sin(omega tau + phi) d`` (the walk's foot, whose direction the drift already names). Gaussian noise of
``noise`` units is added to every coordinate. 3 x 4 x 3 x 3 = 108 parameter combinations, each captioned by
:data:`TEMPLATES` in two phrasings: 216 distinct captions, so a frozen text tower embeds them all once.

:func:`recover_params` reads the parameters back from any trajectory by least squares against the noise-free
family (every combination at :data:`PHASES` phases): the evaluator of generated motions, exact on clean data
(tests/data/test_motions.py).
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "ACTIONS",
    "DIRECTIONS",
    "SPEEDS",
    "AMPLITUDES",
    "TEMPLATES",
    "JOINTS",
    "PHASES",
    "MotionParams",
    "all_params",
    "caption",
    "captions",
    "parse_caption",
    "trajectory",
    "MotionData",
    "sample_motions",
    "recover_params",
]

ACTIONS = ("walk", "wave", "jump")
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, 1.0), "down": (0.0, -1.0)}
SPEEDS = {"slowly": 1.0, "steadily": 2.0, "quickly": 3.0}  # cycles per clip
AMPLITUDES = {"small": 0.25, "medium": 0.5, "large": 0.75}  # units
WALK_STRIDE = 0.4  # root drift per cycle of a walk
JOINTS = ("root", "head", "left hand", "right hand", "foot")
REST = np.array([[0.0, 0.0], [0.0, 0.6], [-0.4, 0.3], [0.4, 0.3], [0.0, -0.6]])  # (J, 2) offsets from the root
PHASES = 48  # phase grid of recover_params

_VERB = {"walk": ("walks", "steps"), "wave": ("waves a hand", "swings"), "jump": ("jumps", "hops")}
_DIR = {"left": "to the left", "right": "to the right", "up": "upward", "down": "downward"}
TEMPLATES = (
    "a person {verb} {direction} {speed} with {amplitude} {noun}",
    "{amplitude} {noun}, {speed}: someone {verb} {direction}",
)


@dataclass(frozen=True)
class MotionParams:
    action: str
    direction: str
    speed: str
    amplitude: str

    def __post_init__(self):
        for name, allowed in (("action", ACTIONS), ("direction", DIRECTIONS), ("speed", SPEEDS),
                              ("amplitude", AMPLITUDES)):  # fmt: skip
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {tuple(allowed)}, got {getattr(self, name)!r}")


def all_params() -> list[MotionParams]:
    """The 108 combinations, in a fixed order (index = the combination id)."""
    return [MotionParams(*c) for c in itertools.product(ACTIONS, DIRECTIONS, SPEEDS, AMPLITUDES)]


def caption(p: MotionParams, template: int = 0) -> str:
    """The caption of ``p`` in phrasing ``template``; it names all four parameters."""
    if not 0 <= template < len(TEMPLATES):
        raise ValueError(f"template must be in [0, {len(TEMPLATES)}), got {template}")
    verb, noun = _VERB[p.action]
    return TEMPLATES[template].format(verb=verb, noun=noun, direction=_DIR[p.direction], speed=p.speed,
                                      amplitude=p.amplitude)  # fmt: skip


def captions() -> list[str]:
    """Every distinct caption: index ``combo * len(TEMPLATES) + template``."""
    return [caption(p, t) for p in all_params() for t in range(len(TEMPLATES))]


def parse_caption(text: str) -> MotionParams:
    """The parameters a caption names (the inverse of :func:`caption`)."""
    found = {}
    for name, table in (("action", {a: _VERB[a][0] for a in ACTIONS}), ("direction", _DIR),
                        ("speed", {s: s for s in SPEEDS}), ("amplitude", {a: a for a in AMPLITUDES})):  # fmt: skip
        hits = [k for k, phrase in table.items() if phrase in text]
        if len(hits) != 1:
            raise ValueError(f"caption {text!r} names no single {name}")
        found[name] = hits[0]
    return MotionParams(**found)


def trajectory(p: MotionParams, phase: float | np.ndarray, length: int = 32) -> np.ndarray:
    """Noise-free joints [..., length, J, 2] of ``p`` at ``phase`` (a scalar or an array of phases)."""
    phase = np.asarray(phase, dtype=np.float64)[..., None]  # (..., 1)
    tau = np.arange(length) / length  # (T,)
    cycles, a = SPEEDS[p.speed], AMPLITUDES[p.amplitude]
    d = np.array(DIRECTIONS[p.direction])
    x = np.broadcast_to(REST, phase.shape[:-1] + (length, len(JOINTS), 2)).copy()  # (..., T, J, 2)
    angle = 2 * math.pi * cycles * tau + phase  # (..., T)
    out = a * (1 - np.cos(angle)) / 2  # (..., T) one-sided swing in [0, a]
    if p.action == "walk":
        x += (WALK_STRIDE * cycles * tau)[..., None, None] * d  # the whole body drifts
        x[..., 4, :] += (a * np.sin(angle))[..., None] * d  # the foot swings about its rest place
    elif p.action == "wave":
        x[..., 3, :] += out[..., None] * d  # the right hand only
    else:  # jump
        x += out[..., None, None] * d
    return x


@dataclass
class MotionData:
    joints: torch.Tensor  # [N, T, J, 2] float32
    combo: torch.Tensor  # [N] int64 index into all_params()
    template: torch.Tensor  # [N] int64 caption phrasing
    phase: torch.Tensor  # [N] float64

    @property
    def caption_id(self) -> torch.Tensor:
        """[N] index into :func:`captions`."""
        return self.combo * len(TEMPLATES) + self.template


def sample_motions(n: int, seed: int, length: int = 32, noise: float = 0.02,
                   combos: np.ndarray | None = None) -> MotionData:  # fmt: skip
    """``n`` motions drawn from ``seed`` (numpy's generator, no global state): a uniform combination (or the given
    ``combos``), phrasing and phase each, plus Gaussian noise."""
    if n < 1 or length < 4 or noise < 0:
        raise ValueError(f"need n >= 1, length >= 4 and noise >= 0, got {n}, {length}, {noise}")
    rng = np.random.default_rng([seed, 7])
    params = all_params()
    combo = rng.integers(len(params), size=n) if combos is None else np.asarray(combos, dtype=np.int64)
    if combo.shape != (n,) or combo.min() < 0 or combo.max() >= len(params):
        raise ValueError(f"combos must be {n} indices in [0, {len(params)})")
    template = rng.integers(len(TEMPLATES), size=n)
    phase = rng.uniform(0, 2 * math.pi, size=n)
    joints = np.empty((n, length, len(JOINTS), 2))
    for c in np.unique(combo):  # one vectorised call per combination
        rows = combo == c
        joints[rows] = trajectory(params[c], phase[rows], length)
    joints += noise * rng.standard_normal(joints.shape)
    return MotionData(torch.from_numpy(joints.astype(np.float32)), torch.from_numpy(combo),
                      torch.from_numpy(template), torch.from_numpy(phase))  # fmt: skip


@functools.lru_cache(maxsize=4)
def _templates(length: int) -> torch.Tensor:
    """[C * PHASES, T * J * 2] float64: every combination at every grid phase, flattened (built once per length)."""
    grid = np.arange(PHASES) * 2 * math.pi / PHASES
    return torch.from_numpy(np.stack([trajectory(p, grid, length) for p in all_params()]).reshape(
        len(all_params()) * PHASES, -1))  # fmt: skip


def recover_params(joints: torch.Tensor) -> torch.Tensor:
    """[N] combination ids of the noise-free motions nearest (least squares over every combination and
    :data:`PHASES` phases) to ``joints`` [N, T, J, 2]."""
    if joints.ndim != 4 or joints.shape[-2:] != (len(JOINTS), 2):
        raise ValueError(f"joints must be [N, T, {len(JOINTS)}, 2], got {tuple(joints.shape)}")
    bank = _templates(joints.shape[1])  # (C * P, D)
    x = joints.flatten(1).to(torch.float64)  # (N, D)
    dist = (x * x).sum(1, keepdim=True) - 2 * x @ bank.T + (bank * bank).sum(1)  # (N, C * P)
    return dist.argmin(1) // PHASES
