"""OSM's generative mask classification against a closed-set classifier head on the same MaskQFormer tokens, on
the canvas world, over seeds (issue 18 item 10):

    .venv/bin/python benchmarks/osm.py --out runs/osm                  # both heads x 2 seeds
    .venv/bin/python benchmarks/osm.py --out runs/osm --seeds 0 1 2 --set steps=400
    .venv/bin/python benchmarks/osm.py --out runs/osm --report         # finished runs only

Each arm trains the registered recipe ``osm-canvas`` through the one loop into ``OUT/ARM-sSEED`` (a finished run
is reused) with the overrides in ``ARMS`` (fewer steps and canvases than the recipe's defaults, to fit a loaded
2-core CPU). The arms share seeds (initialization, data order, proposals), so the report gives each metric's mean
+- 95% CI over seeds (t distribution) and the paired difference generate - closed. The metrics: exact class names
from ground-truth masks (``acc@1``) and from proposals of IoU >= 0.5 (``acc@prop``), and the share of generated
answers that name no class (``unknown``; 0 by construction for the closed head).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny convolutions: one thread each avoids spin-waits on a shared CPU

from _arms import Arm, main  # noqa: E402

_COMMON = ("steps=250", "canvases=600", "valid_canvases=64", "eval_batches=2")
METRICS = ("acc@1", "acc@prop", "unknown")
ARMS = {
    "generate": Arm("osm-canvas", (*_COMMON, "head=generate"), METRICS, baseline="closed"),
    "closed": Arm("osm-canvas", (*_COMMON, "head=closed"), METRICS),
}

if __name__ == "__main__":
    _, evals = main(__doc__, ARMS, seeds=[0, 1])
    first = next(iter(next(iter(evals.values())).values()), {}) if evals else {}
    print(f"  held-out objects per seed: ground truth {first.get('n@1')}, proposals {first.get('n@prop')}")
