"""Train every run of a comparison to the same budget, for each seed, and probe it along the way.

Layout of ``out``::

    compare.json                the comparison (a second compare into the same folder must be the same one)
    runs/<run>/seed<S>/         a masklab run folder (model/, metrics.jsonl) + points.jsonl + result.json
    results.jsonl               one record per run and seed: resolved recipe, compute spent, probe metrics
    table.md, curves.png        written by :mod:`masklab.compare.report`

Each run trains in ``points`` segments (``train(..., stop_at=)`` then ``resume``, which repeats an uninterrupted
run exactly) and is probed at the end of each, so the curves cost no extra training. A finished run
(``result.json``) is never redone; a killed one resumes from its last segment. The harness fixes, for every run
alike: ``steps`` from the budget, ``warmup`` capped at 10% of the steps, checkpoints and evaluations only at
segment ends. A ``minutes`` budget trains the recipe's own ``steps`` under ``max_minutes`` in one segment.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from masklab.compare.flops import flops_per_step, tokens_per_example
from masklab.compare.probes import PROBE, check_fits
from masklab.compare.spec import Comparison, RunSpec

__all__ = ["Job", "plan", "run_job", "compare", "collect"]


@dataclass(frozen=True)
class Job:
    label: str
    seed: int
    recipe: object  # the resolved Recipe (seed and budget steps applied)
    stops: tuple[int, ...]  # the steps at which the run is probed; the last is its end
    tokens_per_step: int
    flops_per_step: float
    probes: tuple[str, ...]
    folder: Path


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", label).strip("_") or "run"


def _resolve(run: RunSpec, shared: tuple[str, ...]):
    from masklab.train.recipes import get_recipe
    from masklab.train.recipes.base import apply_overrides

    try:
        return apply_overrides(get_recipe(run.recipe), [*shared, *run.overrides])
    except ValueError as e:
        raise ValueError(f"run {run.label!r}: {e}") from None


def plan(c: Comparison, out: Path, points: int = 4) -> list[Job]:
    """Every (run, seed) job, checked before anything trains: recipes and keys exist, probes fit, the budget buys
    at least one step of each run."""
    if not c.runs:
        raise ValueError("compare needs at least one run")
    if len({r.label for r in c.runs}) != len(c.runs) or len({_slug(r.label) for r in c.runs}) != len(c.runs):
        raise ValueError("two runs have the same label")
    if not c.probes:
        raise ValueError("give at least one --probe (masklab list probe)")
    for p in c.probes:
        PROBE[p]  # an unknown probe is one ValueError naming the choices
    jobs = []
    for run in c.runs:
        base = _resolve(run, c.shared)
        for p in c.probes:
            check_fits(p, base)
        task = base.build()  # the model's size and the example length set the cost of a step
        tokens, flops = base.batch_size * tokens_per_example(task), flops_per_step(base, task)
        del task
        changes = {"eval_every": 0, "ckpt_every": 0, "eval_batches": min(base.eval_batches, 4)}
        if c.budget.kind == "minutes":
            steps, stops = base.steps, (base.steps,)
            changes["max_minutes"] = c.budget.amount
        else:
            per_step = flops if c.budget.kind == "flops" else tokens
            steps = int(c.budget.amount // per_step)
            if steps < 1:
                raise ValueError(
                    f"budget {c.budget} is smaller than one step of {run.label!r} ({per_step:.3g} {c.budget.kind})"
                )
            n = max(1, min(points, steps))
            stops = tuple(sorted({math.ceil(steps * (k + 1) / n) for k in range(n)}))
            changes["max_minutes"] = 0.0
        changes.update(steps=steps, warmup=min(base.warmup, steps // 10))
        for seed in range(c.seeds):
            recipe = dataclasses.replace(base, **changes, seed=seed)
            folder = out / "runs" / _slug(run.label) / f"seed{seed}"
            jobs.append(Job(run.label, seed, recipe, stops, tokens, flops, c.probes, folder))
    return sorted(jobs, key=lambda j: j.seed)  # seed-major: every run's first seed is done first


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def _checkpoint_step(folder: Path) -> int:
    from masklab.train import checkpoint

    if not checkpoint.is_checkpoint(folder):
        return 0
    return int(checkpoint.read_manifest(checkpoint.resolve(folder))["step"])


def run_job(job: Job) -> dict:
    """Train and probe one (run, seed); returns its result record (read back if it is finished already)."""
    from masklab.train.loop import train
    from masklab.train.recipes.base import to_dict

    done = job.folder / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    job.folder.mkdir(parents=True, exist_ok=True)
    points_file = job.folder / "points.jsonl"
    points = [json.loads(x) for x in points_file.read_text().splitlines()] if points_file.exists() else []
    seconds = sum(p["train_seconds"] for p in points)
    step, summary = _checkpoint_step(job.folder), {}
    for stop in job.stops:
        if any(p["step"] == stop for p in points):
            continue
        if step < stop:
            last = stop == job.stops[-1]
            summary = train(job.recipe, job.folder, resume=step > 0, progress=False, stop_at=None if last else stop)
            seconds += summary["train_seconds"]
            step = summary["step"]
        metrics = {}
        for name in job.probes:
            metrics.update(PROBE.get(name)(job.folder / "model", job.recipe))
        point = {
            "step": step,
            "tokens": step * job.tokens_per_step,
            "flops": step * job.flops_per_step,
            "train_seconds": summary.get("train_seconds", 0.0),
            "eval": summary.get("eval", {}),
            "metrics": metrics,
        }
        points.append(point)
        with open(points_file, "a") as f:
            f.write(json.dumps(point) + "\n")
        if step < stop:  # a minutes budget ended the run before its steps
            break
    last = points[-1]
    result = {
        "run": job.label,
        "seed": job.seed,
        "recipe": to_dict(job.recipe),
        "steps": last["step"],
        "tokens": last["tokens"],
        "flops": last["flops"],
        "train_seconds": seconds,
        "eval": last["eval"],
        "metrics": last["metrics"],
        "points": points,
    }
    _write_json(done, result)
    return result


def _claim(out: Path, c: Comparison, points: int) -> None:
    """Write compare.json, or check that ``out`` holds this same comparison."""
    record = {"comparison": c.to_dict(), "points": points}
    path = out / "compare.json"
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise ValueError(f"{path} is not valid JSON: is --out a masklab compare folder?") from None
        if old != json.loads(json.dumps(record)):
            raise ValueError(f"--out {out} holds a different comparison (see its compare.json); use a new folder")
        return
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"--out {out} is not empty and holds no comparison; use a new folder")
    out.mkdir(parents=True, exist_ok=True)
    _write_json(path, record)


def collect(out: Path, jobs: list[Job]) -> list[dict]:
    """The finished jobs' records, in plan order, rewritten to results.jsonl."""
    records = [json.loads((j.folder / "result.json").read_text()) for j in jobs if (j.folder / "result.json").exists()]
    tmp = out / f".results.jsonl.tmp-{os.getpid()}"
    tmp.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "points"}) + "\n" for r in records))
    os.replace(tmp, out / "results.jsonl")
    return records


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def compare(c: Comparison, out, *, points: int = 4, workers: int = 1, progress: bool = True) -> list[dict]:
    """Run the comparison into ``out`` (resuming what a killed one left); returns the records of every job."""
    from tqdm.auto import tqdm

    out = Path(out)
    jobs = plan(c, out, points)
    _claim(out, c, points)
    bar = tqdm(total=len(jobs), disable=not progress, unit="run", dynamic_ncols=True)
    if workers <= 1:
        for job in jobs:
            bar.set_description(f"{job.label} seed {job.seed}")
            run_job(job)
            collect(out, jobs)
            bar.update(1)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        threads = max(1, (os.cpu_count() or 1) // workers)
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(threads,)) as pool:
            for fut in as_completed([pool.submit(run_job, j) for j in jobs]):
                fut.result()
                collect(out, jobs)
                bar.update(1)
    bar.close()
    return collect(out, jobs)
