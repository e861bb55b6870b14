"""Marten's VQAMask against VQA alone on read-the-canvas question answering, over seeds (issue 18 item 12):

    .venv/bin/python benchmarks/marten.py --out runs/marten                 # both arms x 1 seed
    .venv/bin/python benchmarks/marten.py --out runs/marten --seeds 0 1 2 --set steps=400
    .venv/bin/python benchmarks/marten.py --out runs/marten --report        # finished runs only

Each arm trains the registered recipe ``marten-canvas`` through the one loop into ``OUT/ARM-sSEED`` (a finished run
is reused) with the overrides in ``ARMS`` (fewer steps and examples than the recipe's defaults, to fit a loaded
2-core CPU). The arms share seeds (initialization, data order), so the report gives each metric's mean +- 95% CI
over seeds (t distribution; the mean alone for one seed) and the paired difference mask - none. The metrics: answer
accuracy on held-out canvases (``acc``; the mask generator is not used to answer), the majority-answer floor, and
the mask generator's held-out IoU (mask arm only).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny convolutions: one thread each avoids spin-waits on a shared CPU

from _arms import Arm, main  # noqa: E402

_COMMON = ("steps=200", "examples=600", "valid_examples=256", "eval_batches=4")
METRICS = ("acc", "majority", "mask_iou")
ARMS = {
    "mask": Arm("marten-canvas", (*_COMMON, "mask_weight=1.0"), METRICS, baseline="none"),
    "none": Arm("marten-canvas", (*_COMMON, "mask_weight=0"), METRICS),
}

if __name__ == "__main__":
    _, evals = main(__doc__, ARMS, seeds=[0])
    first = next(iter(next(iter(evals.values())).values()), {}) if evals else {}
    print(f"  held-out questions per seed: {first.get('examples')}")
