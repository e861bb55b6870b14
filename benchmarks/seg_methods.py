"""Mask-using segmentation methods on the canvas worlds, over seeds, each against its own baseline:

* SegAgent: NoC@85 / NoC@90 (and failures at 20 clicks) of the imitation policy against the simulated annotator it
  imitates, both with the random walker as the tool, on the same held-out examples (one run holds both);
* Mask-Adapter: mask-classification accuracy against the proposals' IoU, adapter (+ mask consistency) against plain
  mask pooling;
* MAYOR: instance IoU, leak into neighbouring instances and COCO mask AP, instance-aware against plain pixel targets;
* OneRef: grounding Acc@0.5 and mean box IoU, referring-aware against count-matched random image masking.

    .venv/bin/python benchmarks/seg_methods.py --out runs/seg_methods                 # every arm x 2 seeds
    .venv/bin/python benchmarks/seg_methods.py --out runs/seg_methods --arms mayor mayor-plain --seeds 0 1 2
    .venv/bin/python benchmarks/seg_methods.py --out runs/seg_methods --report        # finished runs only

Every arm trains its registered recipe through the one loop into ``OUT/ARM-sSEED`` (a finished run is reused) with
the overrides in ``ARMS``: fewer steps and examples than the recipes' defaults, so that all seven arms x two seeds
fit in about 20 minutes of a loaded 2-core CPU. Paired arms share seeds (same initialization seed, same data
order), so the report gives each metric's mean +- 95% CI over seeds (t distribution) and the paired difference to
the baseline.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny convolutions: one thread each avoids spin-waits on a shared CPU

from _arms import Arm, main  # noqa: E402

_AGENT = ("steps=150", "examples=200", "valid_examples=24", "eval_batches=1")
_ADAPTER = ("steps=120", "canvases=480", "gt_warmup=30", "valid_canvases=48", "eval_batches=2")
_MAYOR = ("steps=200", "scenes=400", "valid_scenes=32", "eval_batches=2")
_ONEREF = ("steps=150", "canvases=400", "valid_canvases=64", "eval_batches=3")
_NOC = tuple(f"{who}_{k}" for who in ("policy", "oracle") for k in ("NoC@85", "NoC@90", "NoF@90", "IoU@1"))
_ACC = ("acc@0.5", "acc@0.6", "acc@0.7", "acc@0.8", "acc@0.9", "acc@1")
_INSTANCE = ("instance_iou", "leak", "AP", "AP50", "AP75")

ARMS = {
    "segagent": Arm("segagent-canvas", _AGENT, _NOC),
    "adapter": Arm("mask-adapter-canvas", _ADAPTER, _ACC, baseline="pooling"),
    "pooling": Arm("mask-adapter-canvas", (*_ADAPTER, "pool=mask", "consistency=0"), _ACC),
    "mayor": Arm("mayor-dense", _MAYOR, _INSTANCE, baseline="mayor-plain"),
    "mayor-plain": Arm("mayor-dense", (*_MAYOR, "targets=plain"), _INSTANCE),
    "oneref": Arm("oneref-canvas", _ONEREF, ("Acc@0.5", "box_iou"), baseline="oneref-random"),
    "oneref-random": Arm("oneref-canvas", (*_ONEREF, "masking=random"), ("Acc@0.5", "box_iou")),
}

if __name__ == "__main__":
    _, evals = main(__doc__, ARMS, seeds=[0, 1])
    for name, runs in evals.items():
        sizes = ("n@", "instances", "grounded", "rollouts")
        counts = {k: v for k, v in next(iter(runs.values())).items() if k.startswith(sizes)}
        print(f"  {name}: held-out sizes per seed: {counts}")
