"""Text-as-mask segmentation models on the canvas world, over seeds: Text4Seg with R-RLE against plain descriptors
(the paper's ~3x faster inference), Text4Seg++ next-brick prediction against image-wise descriptors at an equal
token budget, STAMP's one-pass all-mask prediction against autoregressive descriptors, and MLLMSeg's light mask
decoder against the text decoders.

    .venv/bin/python benchmarks/seg_models.py --out runs/seg_models               # train every arm x 3 seeds, report
    .venv/bin/python benchmarks/seg_models.py --out runs/seg_models --arms rrle plain --seeds 0   # some of them
    .venv/bin/python benchmarks/seg_models.py --out runs/seg_models --report      # only report finished runs
    .venv/bin/python benchmarks/seg_models.py --out runs/seg_models --decode-time 48   # R-RLE vs plain, gold length

Every arm trains its registered recipe through the one loop (same canvases, same held-out world, same schedule;
``--set key=value`` overrides all of them) into ``OUT/ARM-sSEED``; a finished run is reused, so arms can be trained
in separate processes and reported together. The report reads each run's final held-out evaluation (gIoU, cIoU,
Pr@0.5, mean NFE and generated tokens per example, share of well-formed answers; 192 examples of the held-out
world) and gives mean +- 95% CI over seeds (t distribution). It then times inference in this one process: for
``--latency-examples`` held-out examples, one example at a time, every arm's model in turn (interleaved, best of
``--repeat``), and prints each arm's time per example and its ratio to R-RLE's. The ceiling of each answer format
(the gold answer read back: the resolution the format allows) is computed on the same examples. Last, whether
each model reads the image at all: its held-out loss with every example's own image and with the next example's
(:func:`image_dependence`; equal losses mean answers from the prompt alone).

``--decode-time N`` measures only the format's cost, Text4Seg's claim that R-RLE answers are faster to generate
(its abstract: R-RLE shortens the descriptors by 74% and speeds inference up ~3x over the plain ones):
one model (R-RLE seed ``min(--seeds)`` when it has run, else the recipe's freshly initialised model: plain and R-RLE
share every weight shape and the vocabulary) generates, for each of N held-out examples, exactly as many tokens as
that example's gold answer has in each format (:func:`forced_decode`: the generator's own KV-cached greedy loop,
with no early ``<eos>``), so the time ratio measures the formats' lengths, not what an untrained model happens to
write. Examples are timed one at a time, both formats in turn, best of ``--repeat``; the ratio plain / R-RLE is
given per example with a 95% t interval over examples, with the mean gold tokens per answer in each format.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny matmuls: one thread each avoids spin-waits on a shared CPU

import argparse  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from masklab.compare.flops import flops_per_step  # noqa: E402
from masklab.compare.report import mean_ci as t_mean_ci  # noqa: E402
from masklab.compare.report import mean_ci_text
from masklab.seg.metrics import intersection_union, summarize  # noqa: E402
from masklab.seg.models.rows import Batch, answer_text, example, read_answer  # noqa: E402
from masklab.seg.models.vlm import Decoded, greedy_decode  # noqa: E402
from masklab.train.loop import trained  # noqa: E402
from masklab.train.recipes import get_recipe  # noqa: E402
from masklab.train.recipes.base import apply_overrides  # noqa: E402

# arm -> (recipe, overrides)
ARMS = {
    "rrle": ("text4seg-canvas", []),
    "plain": ("text4seg-canvas", ["descriptors=plain"]),
    "bricks": ("text4seg-bricks", []),
    "stamp": ("stamp-canvas", []),
    "mllmseg": ("mllmseg-canvas", []),
}


def _recipe(arm: str, seed: int, extra: list[str]):
    name, over = ARMS[arm]
    return apply_overrides(get_recipe(name), [*over, f"seed={seed}", *extra])


def _run(arm: str, seed: int, out: Path, extra: list[str]) -> dict:
    """Train (or reuse) one arm and seed; the run's summary."""
    folder, t = out / f"{arm}-s{seed}", time.perf_counter()
    fresh = not (folder / "summary.json").is_file()
    summary = trained(_recipe(arm, seed, extra), folder)
    if fresh:
        print(f"trained {arm} seed {seed}: {time.perf_counter() - t:.0f} s, gIoU {summary['eval']['gIoU']:.3f}")
    return summary


def _loaded(arm: str, seed: int, out: Path, extra: list[str]):
    """The trained objective of a run (its task rebuilt, the checkpoint loaded) and the held-out rows."""
    recipe = _recipe(arm, seed, extra)
    task = recipe.build()
    task.objective.load_model(out / f"{arm}-s{seed}" / "model")
    return task.objective.eval(), task.valid, recipe, task


def _ceilings(arms: list[str], n: int, extra: list[str]) -> dict[str, float]:
    """gIoU of the gold answers read back (the format's resolution) on the first n held-out examples."""
    out = {}
    for arm in arms:
        recipe = _recipe(arm, 0, extra)
        fmt, layout = recipe.answer_format, recipe.layout
        inters, unions = [], []
        for i in range(n):
            c, expr, k = example(recipe.valid_world, i, recipe.image_size)
            if fmt in ("rrle", "plain", "bricks"):
                pred, _ = read_answer(
                    fmt, answer_text(fmt, c, expr, k, layout, getattr(recipe, "brick_grid", 8)), layout
                )
            elif fmt == "seg":  # STAMP's cells: the same 16 x 16 nearest grid, upsampled
                from masklab.seg.descriptors import grid_to_mask, mask_to_grid

                pred = grid_to_mask(mask_to_grid(c.masks[k], layout.grid), c.masks[k].shape)
            else:  # pixel masks
                pred = c.masks[k]
            i_, u_ = intersection_union(torch.from_numpy(pred), torch.from_numpy(c.masks[k]))
            inters.append(int(i_))
            unions.append(int(u_))
        out[arm] = summarize(inters, unions)["gIoU"]
    return out


def swap_images(rows: torch.Tensor, layout) -> torch.Tensor:
    """The rows with each example's image replaced by the next example's (cyclically): the same prompts and
    targets, other pictures."""
    a, b = layout.spans["image"]
    out = rows.clone()
    out[:, a:b] = rows.roll(1, 0)[:, a:b]
    return out


def image_dependence(objective, rows: torch.Tensor) -> tuple[float, float]:
    """(held-out loss with each example's own image, with another example's image) of a trained ``objective`` on
    ``rows``: a model that reads the image scores worse on the wrong one; equal losses mean it answers from the
    prompt alone."""
    with torch.no_grad():
        own = float(objective(rows, None)[0])
        other = float(objective(swap_images(rows, objective.layout), None)[0])
    return own, other


def _latency(models: dict, n: int, repeat: int) -> dict[str, list[float]]:
    """Milliseconds per example (batch of one, best of ``repeat``), arms interleaved example by example."""
    times: dict[str, list[float]] = {arm: [] for arm in models}
    torch.set_num_threads(1)
    with torch.no_grad():
        for i in range(n):
            for arm, (objective, rows) in models.items():
                b = Batch.unpack(rows[i : i + 1], objective.layout)
                best = math.inf
                for _ in range(repeat):
                    t = time.perf_counter()
                    objective.segment(b)
                    best = min(best, time.perf_counter() - t)
                times[arm].append(1e3 * best)
    return times


def forced_decode(model, pixels: torch.Tensor, prompt: torch.Tensor, length: int) -> Decoded:
    """Greedy generation of exactly ``length`` tokens per row: :func:`greedy_decode` (one prefill, then one cached
    forward per token) with an end token no id equals, so no row stops early and the NFE is ``length``."""
    return greedy_decode(model, pixels, prompt, eos_id=-1, max_new=length)


def gold_lengths(rows: torch.Tensor, layout) -> torch.Tensor:
    """(B,) tokens of each row's gold answer, <eos> included (the answer slot is right-padded with 0)."""
    return (Batch.unpack(rows, layout).answer != 0).sum(1)


def _decode_model(seed: int, out: Path, extra: list[str]):
    """The model the two formats are timed on: R-RLE's trained one when it has run, else the recipe's fresh one."""
    if (out / f"rrle-s{seed}" / "model").is_dir():
        return _loaded("rrle", seed, out, extra)[0].model, f"rrle seed {seed} checkpoint"
    return _recipe("rrle", seed, extra).build().objective.model.eval(), "fresh R-RLE model"


def decode_times(model, rows: dict, layouts: dict, n: int, repeat: int) -> dict[str, tuple[list[int], list[float]]]:
    """Per format ``fmt`` of ``rows``/``layouts`` (held-out rows of the same examples): (gold tokens, best-of-
    ``repeat`` milliseconds) of forced-length generation for the first ``n`` examples, batch of one, one thread,
    formats interleaved example by example (a load spike hits both)."""
    fmts = list(rows)
    out: dict[str, tuple[list[int], list[float]]] = {f: ([], []) for f in fmts}
    torch.set_num_threads(1)
    for i in range(n):
        first = Batch.unpack(rows[fmts[0]][i : i + 1], layouts[fmts[0]])
        for f in fmts:
            b = Batch.unpack(rows[f][i : i + 1], layouts[f])
            if not (torch.equal(b.pixels, first.pixels) and torch.equal(b.prompt, first.prompt)):
                raise ValueError(f"held-out example {i} differs between {fmts[0]} and {f} (image or prompt)")
            length = int(gold_lengths(rows[f][i : i + 1], layouts[f])[0])
            best = math.inf
            for _ in range(repeat):
                t = time.perf_counter()
                forced_decode(model, b.pixels, b.prompt, length)
                best = min(best, time.perf_counter() - t)
            out[f][0].append(length)
            out[f][1].append(1e3 * best)
    return out


def _decode_report(args) -> None:
    """``--decode-time``: plain vs R-RLE generation time at gold-length answers (see the module docstring)."""
    seed = min(args.seeds)
    model, which = _decode_model(seed, Path(args.out), args.set)
    rows, layouts = {}, {}
    for arm in ("rrle", "plain"):
        recipe = _recipe(arm, seed, args.set)
        rows[arm], layouts[arm] = recipe.build().valid, recipe.layout
    n = min(args.decode_time, len(rows["rrle"]))
    res = decode_times(model, rows, layouts, n, args.repeat)
    (tr, ms_r), (tp, ms_p) = res["rrle"], res["plain"]
    ratio, half = t_mean_ci([p / r for p, r in zip(ms_p, ms_r, strict=True)])
    all_r = gold_lengths(rows["rrle"][: len(rows["rrle"])], layouts["rrle"]).float()
    all_p = gold_lengths(rows["plain"][: len(rows["plain"])], layouts["plain"]).float()
    print(f"decode time at gold length, {which}, {n} held-out examples, batch of one, best of {args.repeat}, "
          f"one thread")  # fmt: skip
    for arm, toks, ms in (("rrle", tr, ms_r), ("plain", tp, ms_p)):
        print(f"  {arm:6} tokens/answer (= NFE) {statistics.fmean(toks):6.1f}  "
              f"median {statistics.median(ms):7.1f} ms  mean {statistics.fmean(ms):7.1f} ms")  # fmt: skip
    print(f"  plain / R-RLE time per example: {ratio:.2f} +- {half:.2f} (95% t CI over {n} examples); "
          f"ratio of mean times {statistics.fmean(ms_p) / statistics.fmean(ms_r):.2f}; "
          f"token ratio {statistics.fmean(tp) / statistics.fmean(tr):.2f}")  # fmt: skip
    print(f"  gold tokens/answer over all {len(all_r)} held-out examples: R-RLE {float(all_r.mean()):.1f}, "
          f"plain {float(all_p.mean()):.1f}")  # fmt: skip


def _figure(models: dict, path: Path, n: int = 4) -> None:
    """Held-out examples: the image, the truth, and each arm's prediction (seed 0)."""
    from masklab.viz._png import plt, save

    arms = list(models)
    fig, axes = plt.subplots(n, 2 + len(arms), figsize=(2 * (2 + len(arms)), 2.1 * n))
    for i in range(n):
        objective, rows = models[arms[0]]
        b = Batch.unpack(rows[i : i + 1], objective.layout)
        _, expr, _ = example(1, i)
        axes[i, 0].imshow(b.pixels[0].permute(1, 2, 0).numpy())
        axes[i, 0].set_title(expr, fontsize=7)
        axes[i, 1].imshow(b.mask[0].numpy(), cmap="Greens", vmin=0, vmax=1)
        axes[i, 1].set_title("truth", fontsize=7)
        for j, arm in enumerate(arms):
            objective, rows = models[arm]
            pred = objective.segment(Batch.unpack(rows[i : i + 1], objective.layout)).masks[0].cpu().numpy()
            axes[i, 2 + j].imshow(np.stack([pred, b.mask[0].numpy(), pred], -1).astype(float))
            axes[i, 2 + j].set_title(arm, fontsize=7)
    for ax in axes.ravel():
        ax.set_axis_off()
    save(fig, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder of the runs (OUT/ARM-sSEED)")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--set", action="append", default=[], help="key=value override for every arm's recipe")
    p.add_argument("--report", action="store_true", help="report finished runs only (train nothing)")
    p.add_argument("--latency-examples", type=int, default=24, help="held-out examples timed per arm")
    p.add_argument("--repeat", type=int, default=3, help="timings per example (the best is kept)")
    p.add_argument("--figure", default=None, help="also draw predictions of seed 0 to this PNG")
    p.add_argument("--decode-time", type=int, default=0, metavar="N",
                   help="only time plain vs R-RLE decoding at gold length on N examples (trains nothing)")  # fmt: skip
    args = p.parse_args()
    if args.decode_time < 0:
        p.error(f"--decode-time must be >= 0, got {args.decode_time}")
    if args.decode_time:
        _decode_report(args)
        return
    out = Path(args.out)
    summaries: dict[str, list[dict]] = {}
    for arm in args.arms:
        for seed in args.seeds:
            if args.report and not (out / f"{arm}-s{seed}" / "summary.json").is_file():
                continue
            summaries.setdefault(arm, []).append(_run(arm, seed, out, args.set))

    print(f"\n{'arm':8} {'seeds':>5} {'gIoU':>16} {'cIoU':>16} {'Pr@0.5':>14} {'NFE':>7} {'tokens':>7} {'valid':>6} "
          f"{'GFLOP/step':>10}")  # fmt: skip
    arms = [a for a in args.arms if a in summaries]
    for arm in arms:
        ev = [s["eval"] for s in summaries[arm]]
        recipe = _recipe(arm, 0, args.set)
        flops = flops_per_step(recipe, _FlopTask(summaries[arm][0]["example_tokens"], recipe, arm, args.set))
        giou, ciou, pr = (mean_ci_text([e[k] for e in ev]) for k in ("gIoU", "cIoU", "Pr@0.5"))
        print(f"{arm:8} {len(ev):5d} {giou:>16} {ciou:>16} {pr:>14} {statistics.fmean(e['nfe'] for e in ev):7.1f} "
              f"{statistics.fmean(e['answer_tokens'] for e in ev):7.1f} "
              f"{statistics.fmean(e['well_formed'] for e in ev):6.2f} {flops / 1e9:10.1f}")  # fmt: skip
    ceil = _ceilings(arms, 192, args.set)
    print("format ceilings (gold answer read back, gIoU):", {a: round(v, 3) for a, v in ceil.items()})

    seed = min(args.seeds)
    models = {}
    for arm in arms:
        if (out / f"{arm}-s{seed}" / "model").is_dir():
            objective, valid, _, _ = _loaded(arm, seed, out, args.set)
            models[arm] = (objective, valid)
    if models:
        print(f"\nheld-out loss, seed {seed}, first 64 examples: own image -> another example's image")
        for arm, (objective, rows) in models.items():
            own, other = image_dependence(objective, rows[:64])
            print(f"  {arm:8} {own:.4f} -> {other:.4f}")
    if models and args.latency_examples:
        times = _latency(models, args.latency_examples, args.repeat)
        base = statistics.median(times["rrle"]) if "rrle" in times else None
        print(f"\ninference, batch of one, seed {seed}, {args.latency_examples} held-out examples, best of "
              f"{args.repeat}, one thread:")  # fmt: skip
        for arm, ms in times.items():
            ratio = f"  {statistics.median(ms) / base:.2f}x R-RLE's time" if base else ""
            print(f"  {arm:8} median {statistics.median(ms):8.1f} ms  mean {statistics.fmean(ms):8.1f} ms{ratio}")
    if models and args.figure:
        _figure(models, Path(args.figure))
        print(f"wrote {args.figure}")


class _FlopTask:
    """What :func:`flops_per_step` reads of a task, without drawing its data: the objective's FLOP groups at the
    run's recorded ``example_tokens``."""

    def __init__(self, tokens: int, recipe, arm: str, extra: list[str]):
        from masklab.seg.models.vocab import seg_tokenizer

        self.info = {"example_tokens": tokens}
        self.objective = recipe.build_objective(seg_tokenizer(max_number=max(recipe.image_size, recipe.grid)))
        self.objective.flop_tokens = tokens


if __name__ == "__main__":
    main()
