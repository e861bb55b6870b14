"""Frame probes on synthetic HMM signals (:class:`masklab.data.hmm_frames.GaussianHMM`, whose hidden states are
known exactly).

- ``frames-state``: a logistic regression on the frozen per-frame encoder features names the hidden state that
  emitted each frame (fit on 100 sequences, scored on 100 others); accuracy in percent. The best a single frame
  allows is the Bayes rate of its emission alone, which :func:`single_frame_bayes` gives; the chain's memory lets
  context beat it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from masklab.compare.probes.base import PROBE, Probe

__all__ = ["single_frame_bayes"]


def _model(folder: Path, recipe):
    """The trained frame model: the recipe's model with the checkpoint's weights (it is not a HF folder)."""
    from masklab.train import checkpoint

    folder = checkpoint.load(folder, model=False).folder  # verified against its manifest
    objective = recipe.build().objective
    objective.load_model(folder)
    return objective.model.eval()


def single_frame_bayes(hmm, frames: torch.Tensor, states: torch.Tensor) -> float:
    """Accuracy of the best guess of each state from its frame alone (equal priors, Gaussian emissions)."""
    d = ((frames.numpy()[..., None, :] - hmm.means) ** 2).sum(-1)  # (n, T, states)
    return float(np.mean(d.argmin(-1) == states.numpy()))


def frames_state(folder: Path, recipe) -> dict[str, float]:
    from masklab.train.probe import linear_probe

    model = _model(folder, recipe)
    (xtr, str_), (xte, ste) = (recipe.hmm.sample(100, recipe.length, seed=s) for s in (3, 4))
    ftr, fte = (model.features(x).flatten(0, 1).numpy() for x in (xtr, xte))
    return {"frames_state_acc": 100.0 * linear_probe(ftr, str_.flatten().numpy(), fte, ste.flatten().numpy())}


PROBE.register("frames-state", "frames: per-frame linear probe of the hidden HMM state (synthetic signals)",
               Probe("frames", {"frames_state_acc": True}, frames_state))  # fmt: skip
