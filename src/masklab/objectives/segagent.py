"""SegAgent's imitation objective (Zhu et al., CVPR 2025, Sec. 3.3: supervised fine-tuning on annotator
trajectories): the cross-entropy of the simulated annotator's next click among the 2 x H x W actions of a
:class:`~masklab.seg.agent.ClickPolicy`, given the image, the expression, the current mask and the clicks so far.

Its evaluation rolls the policy out as SegAgent is evaluated (clicks until the IoU reaches 0.9 or 20 clicks, the
random walker answering each click) and reports NoC@85 and NoC@90 (:func:`masklab.seg.clicks.noc`), the failures
at 20 clicks, and the same numbers for the simulated annotator it imitates, on the same held-out examples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from masklab.objectives.base import Objective, eval_batches
from masklab.seg.agent import AgentLayout, ClickPolicy, oracle_ious, rollout
from masklab.seg.clicks import noc
from masklab.seg.nets import multiply_positions, position_groups

__all__ = ["SegAgentObjective"]


class SegAgentObjective(Objective):
    """Next-click cross-entropy of a :class:`ClickPolicy` on packed trajectory steps (:class:`AgentRows`)."""

    name = "segagent"
    eval_batch_size = 32

    def __init__(self, model: ClickPolicy, layout: AgentLayout, max_clicks: int = 20, stop_at: float = 0.9):
        super().__init__(model)
        if max_clicks < 1 or not 0 < stop_at <= 1:
            raise ValueError(f"max_clicks must be >= 1 and stop_at in (0, 1], got {max_clicks} and {stop_at}")
        self.layout, self.max_clicks, self.stop_at = layout, max_clicks, stop_at
        self.positions: dict[int, float] = {}

    def batch(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.layout.unpack(rows.to(self.device))

    def forward(self, rows: torch.Tensor, keys: torch.Tensor, **ctx):
        b = self.batch(rows)
        S = self.layout.size
        logits = self.model(b["pixels"], b["mask"], b["clicks"], b["prompt"]).float()  # (B, 2 S S)
        y, x, positive = b["target"].unbind(1)
        loss = F.cross_entropy(logits, (1 - positive) * S * S + y * S + x)
        a = logits.argmax(1)
        sign, py, px = a // (S * S), (a % (S * S)) // S, a % S
        rows_ = torch.arange(len(a), device=a.device)
        under_gt, under_mask = b["gt"][rows_, py, px], b["mask"][rows_, py, px]
        useful = torch.where(sign == 0, under_gt & ~under_mask, under_mask & ~under_gt)
        exact = (py == y) & (px == x) & (sign == 1 - positive)
        return loss, {"click_acc": exact.float().mean().detach(), "useful_click": useful.float().mean().detach(),
                      "sign_acc": (sign == 1 - positive).float().mean().detach()}  # fmt: skip

    @torch.no_grad()
    def evaluate(self, examples, seed: int = 0, batch_size: int | None = None, max_batches: int | None = None):
        """Teacher-forced click metrics, then rollouts: NoC@85/90 and failures (NoF@90) of the policy and of the
        simulated annotator on the same examples, and the IoU after one click."""
        out = super().evaluate(examples, seed, batch_size, max_batches)
        was = self.training
        self.eval()
        policy, oracle = [], []
        for rows, *_ in eval_batches(examples, seed, batch_size or self.eval_batch_size, max_batches):
            b = self.batch(rows)
            policy += rollout(self.model, b, self.max_clicks, self.stop_at).tolist()
            images, gts = b["pixels"].permute(0, 2, 3, 1).cpu().numpy(), b["gt"].cpu().numpy()
            oracle += [oracle_ious(im, g, self.max_clicks, self.stop_at) for im, g in zip(images, gts, strict=True)]
        self.train(was)
        for name, traces in (("policy", policy), ("oracle", oracle)):
            for t in (0.85, 0.9):
                counts = [noc(v, t, self.max_clicks) for v in traces]
                out[f"{name}_NoC@{round(100 * t)}"] = sum(counts) / len(counts)
            out[f"{name}_NoF@90"] = sum(max(v) < 0.9 for v in traces) / len(traces)
            out[f"{name}_IoU@1"] = sum(v[0] for v in traces) / len(traces)
        out["rollouts"] = len(policy)
        return out

    def measure(self, rows: torch.Tensor, keys: torch.Tensor | None = None) -> int:
        """Positions each weight multiplies per example (the FLOP count's groups); returns the example's pixels."""
        b = self.layout.unpack(rows)
        self.positions = multiply_positions(
            self.model, lambda: self.model(b["pixels"], b["mask"], b["clicks"], b["prompt"]), len(rows)
        )
        return self.layout.size**2

    def flop_groups(self):
        return position_groups(self.model, self.positions, self.layout.size**2)
