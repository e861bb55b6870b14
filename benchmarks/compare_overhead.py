"""What ``masklab compare`` adds to the runs it schedules: its wall time against the same work done by hand.

    .venv/bin/python benchmarks/compare_overhead.py [--steps 40] [--points 4] [--rounds 3] [--threads 2]

Both sides, in this process, train ``mlm`` (micro preset, 32 x 128 windows) for ``--steps`` steps in ``--points``
segments (``train(stop_at=)`` then ``resume``) and run the ``keyword`` probe after each segment:

- by hand: ``masklab.train.loop.train`` and ``PROBE["keyword"]`` called directly;
- compare: ``masklab.compare.compare`` with a ``tokens`` budget of exactly those steps (so the same segments),
  which also plans (builds the task once to count its cost), writes compare.json, points, results and the report.

The ratio compare / by hand is the harness's overhead; the median over alternating rounds is printed. On a loaded
machine that end-to-end ratio carries the noise of both sides' training, so the harness's own time is also
measured directly: compare's wall time minus the time spent inside ``train`` and the probes it calls (planning,
bookkeeping, results and the report). That time is fixed per comparison, so its share shrinks as runs grow.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from masklab.compare import Comparison, compare, parse_run, report
from masklab.compare.probes import PROBE
from masklab.compare.spec import Budget
from masklab.train.loop import train
from masklab.train.recipes import get_recipe
from masklab.train.recipes.base import apply_overrides

SHARED = ("preset=micro", "seq_len=128", "batch_size=32")


def by_hand(out: Path, steps: int, points: int) -> float:
    t = time.perf_counter()
    recipe = apply_overrides(get_recipe("mlm"), [*SHARED, f"steps={steps}", f"warmup={steps // 10}", "eval_every=0",
                                                 "ckpt_every=0", "eval_batches=4"])  # fmt: skip
    stops = [round(steps * (k + 1) / points) for k in range(points)]
    for i, stop in enumerate(stops):
        train(recipe, out, resume=i > 0, progress=False, stop_at=None if stop == steps else stop)
        PROBE.get("keyword")(out / "model", recipe)
    return time.perf_counter() - t


class Inside:
    """Wall time spent inside wrapped callables (``train`` and the probes), to subtract from compare's total."""

    def __init__(self):
        self.seconds = 0.0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t

        return timed


def harness(out: Path, steps: int, points: int) -> tuple[float, float]:
    """(compare's wall time, the part of it spent outside train and the probes)."""
    import masklab.train.loop as loop
    from masklab.compare.probes.base import Probe

    inside, real_train, real_call = Inside(), loop.train, Probe.__call__
    loop.train, Probe.__call__ = inside.wrap(real_train), inside.wrap(real_call)
    try:
        t = time.perf_counter()
        c = Comparison((parse_run("mlm"),), Budget("tokens", steps * 32 * 128), 1, ("keyword",), SHARED)
        records = compare(c, out, points=points, progress=False)
        report(records, c.probes, out, c.budget)
        total = time.perf_counter() - t
    finally:
        loop.train, Probe.__call__ = real_train, real_call
    return total, total - inside.seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--points", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        by_hand(Path(tmp) / "warm", 2, 1)  # caches (tokenizer, encoded corpus) and imports, untimed
        hand, ours, own = [], [], []
        for r in range(args.rounds):
            hand.append(by_hand(Path(tmp) / f"hand{r}", args.steps, args.points))
            total, outside = harness(Path(tmp) / f"cmp{r}", args.steps, args.points)
            ours.append(total)
            own.append(outside / (total - outside))
            print(f"round {r}: by hand {hand[-1]:.1f} s, compare {total:.1f} s, of which the harness's own "
                  f"{outside:.1f} s ({100 * own[-1]:.1f}% of the work it scheduled)", flush=True)  # fmt: skip
    h, o = statistics.median(hand), statistics.median(ours)
    print(f"median: by hand {h:.1f} s, compare {o:.1f} s, ratio {o / h:.3f} ({100 * (o / h - 1):+.1f}%); "
          f"harness's own time {100 * statistics.median(own):.1f}% of the scheduled work")  # fmt: skip


if __name__ == "__main__":
    main()
