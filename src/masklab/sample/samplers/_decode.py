"""State shared by every sampler: semi-autoregressive blocks, keyed draws, commits, EOS stopping, NaN checks.

A sampler owns only its rule for *which* masked positions to reveal at a step and *what* to put there; the
:class:`Decoder` owns the rest, so every sampler gets ``block_length``, ``eos_id``, top-k/top-p and per-row
keys the same way.

Per-row schedules (batch invariance): ``steps`` is one count per row, each row's masked positions are split
into blocks by their rank among the row's masks (so a row's blocks do not depend on the other rows' prompt
lengths), and the uniforms for row r at (block b, step s) come from ``derive(keys[r], b, s)``. A row's output
is then a function of its prompt, its key and the model's logits for that row only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from masklab.corrupt import keyed
from masklab.sample.categorical import categorical, filter_logits

__all__ = ["Decoder", "DecodeOptions", "check_logits", "split_evenly"]


def check_logits(logits: torch.Tensor, step: int, where: torch.Tensor | None = None) -> None:
    """Refuse NaN or inf logits [..., V] (only at the positions ``where`` [...] when given), naming the step.

    A max and a min over V (both propagate NaN) instead of a copy of the masked rows: at B x L x V =
    4 x 256 x 30522 that copy and its isfinite took 0.34 s, more than the model's forward pass; these take
    0.02 s (``torch.aminmax`` is 5x slower than the two)."""
    bad = ~(torch.isfinite(logits.amax(-1)) & torch.isfinite(logits.amin(-1)))
    if bool((bad & where if where is not None else bad).any()):
        raise ValueError(f"model returned NaN or inf logits at step {step}")


def _called(model_fn, xs: torch.Tensor) -> torch.Tensor:
    """``model_fn(xs)``, refusing anything but logits [B, L, V] for ids [B, L] in one clear error."""
    out = model_fn(xs)
    if not torch.is_tensor(out) or out.dim() != 3 or tuple(out.shape[:2]) != tuple(xs.shape):
        got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise ValueError(f"model returned logits of shape {got} for ids of shape {tuple(xs.shape)}; need [B, L, V]")
    if not out.is_floating_point():
        raise ValueError(f"model returned logits of dtype {out.dtype}; need a floating-point [B, L, V] tensor")
    return out


def split_evenly(total: torch.Tensor, parts: torch.Tensor, width: int) -> torch.Tensor:
    """[B, width]: ``total`` [B] spread over the first ``parts`` [B] slots, remainder on the earliest
    slots."""
    parts = parts.clamp(min=1)[:, None]
    j = torch.arange(width, device=total.device)[None]
    base = torch.div(total[:, None], parts, rounding_mode="floor")
    extra = (j < (total[:, None] % parts)).long()
    return torch.where(j < parts, base + extra, 0)


@dataclass(frozen=True)
class DecodeOptions:
    """How every sampler draws and schedules, whatever its rule: the options :class:`Decoder` owns.

    ``temperature`` / ``top_k`` / ``top_p`` shape each draw (:func:`masklab.sample.categorical.categorical`);
    ``block_length`` splits each row's masked positions into semi-autoregressive blocks (LLaDA, Nie et al. 2025,
    Sec. 2.4); ``cfg_scale`` is LLaDA's classifier-free guidance (the unconditional pass masks the prompt);
    ``eos_id`` / ``fill_id`` stop a row at its first generated EOS (the generated positions after it become
    ``fill_id``, default ``eos_id``); ``pad_id`` marks padding, never filled and not prompt."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    block_length: int | None = None
    cfg_scale: float = 0.0
    eos_id: int | None = None
    fill_id: int | None = None
    pad_id: int | None = None

    def __post_init__(self):
        if self.block_length is not None and self.block_length <= 0:
            raise ValueError(f"block_length must be positive, got {self.block_length}")
        if self.cfg_scale < 0:
            raise ValueError(f"cfg_scale must be >= 0, got {self.cfg_scale}")


class Decoder:
    """Holds the ids being filled and the bookkeeping for one ``generate`` call.

    ``steps`` (an int or one per row [B]) is clamped to each row's masked count unless ``clamp`` is False;
    ``order`` [B, L] receives the step at which each position is revealed; ``stats`` receives ``nfe`` and
    ``row_nfe``; ``options`` are the :class:`DecodeOptions` fields."""

    def __init__(self, model_fn, x, *, mask_id, steps, keys, order=None, stats=None, clamp=True, **options):
        self.options = o = DecodeOptions(**options)
        self.model_fn, self.mask_id, self.keys = model_fn, mask_id, keys
        self.x = x.clone()
        B, L = x.shape
        self.order = order if order is not None else torch.full((B, L), -1, dtype=torch.long, device=x.device)
        self.generated = x == mask_id  # (B, L) positions this call fills
        self.prompt = ~self.generated & (x != o.pad_id if o.pad_id is not None else True)  # masked for CFG's uncond
        self.fill_id = o.eos_id if o.fill_id is None else o.fill_id
        self.stats = stats if stats is not None else {}
        self.stats.setdefault("nfe", 0)
        self.calls = 0  # model calls so far: names the step in errors
        self._plan(steps, clamp)
        self.offset = torch.zeros(B, dtype=torch.long, device=x.device)  # per-row step count of finished blocks
        self.block = 0

    def _plan(self, steps, clamp: bool) -> None:
        """Per-row steps [B], the block of each masked position [B, L] and the steps of each block [B, n_blocks].

        A position's block is its rank among its row's masks over ``block_length``, so a row's blocks do not
        depend on the other rows; each row's steps are spread evenly over its blocks, at least one per block."""
        B, L = self.x.shape
        n = self.generated.sum(1)  # (B,)
        steps = torch.as_tensor(steps, device=self.x.device).expand(B) if not torch.is_tensor(steps) else steps
        steps = steps.to(self.x.device).long()
        self.steps = (torch.minimum(steps, n) if clamp else steps).clamp(min=1)  # (B,)
        rank = self.generated.long().cumsum(1) - 1  # rank of each masked position among its row's masks
        bl = self.options.block_length or max(L, 1)
        self.block_of = torch.where(self.generated, torch.div(rank, bl, rounding_mode="floor"), -1)  # (B, L)
        n_blocks = torch.div(n + bl - 1, bl, rounding_mode="floor")  # (B,)
        self.n_blocks = int(n_blocks.max()) if B else 0
        # steps per block per row, at least one per non-empty block, never more than the block's tokens
        per_block = split_evenly(self.steps, n_blocks, max(self.n_blocks, 1))  # (B, n_blocks)
        size = (
            torch.stack([(self.block_of == b).sum(1) for b in range(self.n_blocks)], 1) if self.n_blocks else per_block
        )
        self.block_steps = torch.minimum(per_block.clamp(min=1), size) if clamp else per_block.clamp(min=1)

    # -- the loop ----------------------------------------------------------------------------------------
    def blocks(self):
        """Yield (block index, active [B, L] bool, steps [B]) for each semi-autoregressive block in turn."""
        for b in range(self.n_blocks):
            self.block = b
            active = (self.block_of == b) & (self.x == self.mask_id)
            if active.any():
                yield b, active, self.block_steps[:, b]
            self.offset += self.block_steps[:, b]

    def active(self) -> torch.Tensor:
        """Masked positions of the current block, after EOS fills."""
        return (self.block_of == self.block) & (self.x == self.mask_id)

    def logits(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """Model logits [B, L, V] for the current ids; only rows that still hold a mask are sent to the
        model, unless the model sets ``every_row`` (a block of a KV-cached model, whose rows are tied to its
        cache: :mod:`masklab.sample.block`)."""
        x = self.x if x is None else x
        alive = (x == self.mask_id).any(1)
        step = self.calls
        self.calls += 1
        cfg = self.options.cfg_scale
        self.stats["nfe"] += 2 if cfg > 0 else 1
        self.stats["row_nfe"] = self.stats.get("row_nfe", 0) + alive.long() * (2 if cfg > 0 else 1)
        everyone = bool(alive.all()) or getattr(self.model_fn, "every_row", False)
        xs = x if everyone else x[alive]
        if cfg > 0:
            # LLaDA's CFG: uncond = the same ids with the prompt masked; logits = u + (w + 1) (c - u)
            un = xs.masked_fill(self.prompt if everyone else self.prompt[alive], self.mask_id)
            cond, uncond = _called(self.model_fn, torch.cat([xs, un])).chunk(2)
            part = uncond + (cfg + 1) * (cond - uncond)
        else:
            part = _called(self.model_fn, xs)
        if everyone:
            out = part
        else:
            out = part.new_zeros((x.shape[0],) + tuple(part.shape[1:]))
            out[alive] = part
        check_logits(out, step, where=x == self.mask_id)
        if self.mask_id < out.shape[-1]:  # the mask token is never a sample (MDLM's zero-masking probability)
            out[..., self.mask_id] = float("-inf")  # in place: a copy of [B, L, V] costs ~0.1 s at V = 30k
        return out

    def uniforms(self, s: int, stream: int, dtype=torch.float64) -> torch.Tensor:
        """[B, L] uniforms for (block, step s, stream): row r depends only on keys[r]. Streams never
        overlap."""
        k = keyed.derive(self.keys, self.block, s)
        return keyed.uniform64(k, self.x.shape[1], stream).to(dtype)

    def draw(self, logits_sel: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, s: int) -> torch.Tensor:
        """One token per selected (row, col) from its logits [N, V], temperature/top-k/top-p applied, in
        float64."""
        u, o = self.uniforms(s, 0)[rows, cols], self.options
        return categorical(logits_sel, temperature=o.temperature, top_k=o.top_k, top_p=o.top_p, u=u)

    def reveal(
        self, logits_sel: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, prob: torch.Tensor, s: int
    ) -> torch.Tensor:
        """The reverse step of an absorbing diffusion at the selected masked (row, col) [N]: a token drawn from
        ``logits_sel`` [N, V] w.p. ``prob`` [N], else V ("stay masked").

        This is the (V + 1)-way categorical [prob * softmax(logits / T), 1 - prob] by inverse CDF with one
        uniform u per position (stream 0), computed without forming it: u < prob reveals, and the token is
        the inverse CDF of softmax(logits / T) at u / prob. The same draw, but the float64 softmax is taken
        only at the positions revealed (about one per step for a sampler with many steps) instead of all N.
        Greedy: a stream-1 uniform below ``prob`` reveals the argmax."""
        o, V = self.options, logits_sel.shape[-1]
        tok = torch.full_like(rows, V)
        u = self.uniforms(s, 1 if o.temperature == 0 else 0)[rows, cols]  # (N,)
        go = u < prob
        if go.any():
            sel = logits_sel[go]
            if o.temperature == 0:
                tok[go] = filter_logits(sel, o.top_k, o.top_p).argmax(-1)
            else:
                tok[go] = categorical(sel, temperature=o.temperature, top_k=o.top_k, top_p=o.top_p, u=u[go] / prob[go])
        return tok

    def commit(
        self, rows: torch.Tensor, cols: torch.Tensor, tok: torch.Tensor, s: int, where: torch.Tensor | None = None
    ) -> None:
        """Write the tokens ``tok`` [N] at (``rows``, ``cols``) [N] that are still masked (and, with ``where``
        [B, L], only those where it holds); record step ``s`` of the block as their reveal; stop rows at their
        first new EOS."""
        chosen = torch.zeros_like(self.generated)
        chosen[rows, cols] = True
        chosen &= self.x == self.mask_id
        if where is not None:
            chosen &= where
        proposal = self.x.clone()
        proposal[rows, cols] = tok.to(self.x.dtype)
        self.x = torch.where(chosen, proposal, self.x)
        step = self.offset + s  # (B,) per-row step number
        self.order[chosen] = step[:, None].expand_as(chosen)[chosen]
        if self.options.eos_id is not None:
            self._stop_at_eos(step)

    def committed(self) -> torch.Tensor:
        """[B, L] positions of the current block that this call generated and that hold a token, before the
        row's first generated EOS: what a remasking sampler (ReMDM, Mask-Predict) may mask again. The prompt,
        earlier blocks, and a row's EOS with the fill after it are final."""
        held = (self.block_of == self.block) & (self.x != self.mask_id)
        if self.options.eos_id is not None:
            eos = (self.x == self.options.eos_id) & self.generated
            held &= eos.long().cumsum(1) == 0  # strictly before the row's first generated EOS
        return held

    def remask(self, where: torch.Tensor) -> None:
        """Put the mask back at ``where`` [B, L], restricted to :meth:`committed`; the position's reveal step
        is overwritten when it is revealed again."""
        self.x = self.x.masked_fill(where & self.committed(), self.mask_id)

    def _stop_at_eos(self, step: torch.Tensor) -> None:
        """Fill every generated position after a row's first generated EOS with ``fill_id``, revealed at
        ``step`` [B] if it was still masked."""
        eos = (self.x == self.options.eos_id) & self.generated
        after = (eos.long().cumsum(1) - eos.long()) > 0  # strictly after the row's first generated EOS
        cut = after & self.generated & (self.x != self.fill_id)
        if cut.any():
            newly = cut & (self.x == self.mask_id)
            self.order[newly] = step[:, None].expand_as(newly)[newly]
            self.x = self.x.masked_fill(cut, self.fill_id)
