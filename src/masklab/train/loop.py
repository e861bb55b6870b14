"""The training loop. It reads top to bottom in the order of the phases of one step:
learning rate, evaluation, checkpoint, micro-steps, clip, optimizer step, log.

Nothing here uses global RNG state: the data order is a keyed permutation per epoch and every mask is keyed on
(seed, epoch, example index), so ``resume=True`` continues to exactly the weights of an uninterrupted run, and a
run on N ranks (``torchrun``) sees the same global batches as a run on one.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from masklab.corrupt import keyed
from masklab.train import checkpoint, distributed
from masklab.train.recipes.base import RESUMABLE_CHANGES, Recipe, from_dict, to_dict

__all__ = ["train", "lr_at", "global_batch", "RESUMABLE_CHANGES"]


def lr_at(step: int, r: Recipe) -> float:
    """Linear warm-up, then cosine decay to ``lr * min_lr_ratio`` at ``steps``."""
    if step < r.warmup:
        return r.lr * (step + 1) / r.warmup
    progress = min(1.0, (step - r.warmup) / max(1, r.steps - r.warmup))
    return r.lr * (r.min_lr_ratio + (1 - r.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class _Order:
    """Example order: one keyed permutation of the N examples per epoch."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self._perm = n, seed, {}

    def perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perm:
            self._perm = {
                epoch: keyed.bits(keyed.example_keys(self.seed, epoch, [0]), self.n, stream=keyed.Stream.DATA_ORDER)[
                    0
                ].argsort()
            }
        return self._perm[epoch]

    def __call__(self, sample: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(example index, epoch) of global sample numbers."""
        epoch = torch.div(sample, self.n, rounding_mode="floor")
        idx = torch.empty_like(sample)
        for e in epoch.unique().tolist():
            sel = epoch == e
            idx[sel] = self.perm(e)[sample[sel] % self.n]
        return idx, epoch


def global_batch(order: _Order, step: int, batch_size: int, seed: int):
    """Indices, keys and positions of the global batch of ``step``."""
    sample = torch.arange(step * batch_size, (step + 1) * batch_size)
    idx, epoch = order(sample)
    keys = keyed.train_keys(seed, epoch, idx)  # keyed on (seed, epoch, example index)
    return idx, keys, torch.arange(batch_size), keyed.batch_key(keys)


def _param_groups(module: torch.nn.Module, weight_decay: float):
    params = {id(p): (n, p) for n, p in module.named_parameters() if p.requires_grad}.values()
    decay = [p for n, p in params if p.dim() >= 2 and "norm" not in n]
    rest = [p for n, p in params if not (p.dim() >= 2 and "norm" not in n)]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _log(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _check_resume(meta: dict, recipe: Recipe) -> None:
    saved = from_dict(meta["recipe"])
    diff = [k for k, v in to_dict(recipe).items() if k not in RESUMABLE_CHANGES and to_dict(saved).get(k) != v]
    if diff:
        raise ValueError(f"cannot resume: the recipe differs from the checkpoint's in {', '.join(sorted(diff))}")


def _optimizer(objective: torch.nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        _param_groups(objective, recipe.weight_decay),
        lr=recipe.lr,
        betas=(0.9, recipe.beta2),
        fused=False,
        foreach=False,
    )


def _restore(out: Path, recipe: Recipe, objective, optimizer, main: bool) -> int:
    """Load the checkpoint in ``out/model`` into ``objective`` and ``optimizer``; returns its step."""
    ckpt_dir, metrics_path = out / "model", out / "metrics.jsonl"
    meta = checkpoint.verify(ckpt_dir)
    _check_resume(meta, recipe)
    objective.load_model(ckpt_dir)
    checkpoint.load_optimizer(ckpt_dir, optimizer)
    start = meta["step"]
    if main and metrics_path.exists():  # drop records past the checkpoint: they will be redone
        kept = [ln for ln in metrics_path.read_text().splitlines() if json.loads(ln)["step"] <= start]
        metrics_path.write_text("".join(ln + "\n" for ln in kept))
    return start


def _micro_size(recipe: Recipe, world: int) -> tuple[int, int]:
    """(examples per rank, examples per micro-step)."""
    per_rank = recipe.batch_size // world
    if per_rank * world != recipe.batch_size or per_rank % recipe.grad_accum:
        raise ValueError(
            f"batch_size={recipe.batch_size} must split evenly over {world} ranks x "
            f"grad_accum={recipe.grad_accum} micro-steps"
        )
    return per_rank, per_rank // recipe.grad_accum


def _micro_steps(model, task, recipe: Recipe, d, order: _Order, step: int, per_rank: int, micro: int):
    """Forward and backward over this rank's share of the global batch, in grad_accum pieces.
    Returns (mean loss, mean metrics). The objective gets only what every objective needs."""
    idx, keys, pos, batch_key = global_batch(order, step, recipe.batch_size, recipe.seed)
    first = d.rank * per_rank
    loss_sum = torch.zeros((), device=d.device)
    metric_sums: dict[str, torch.Tensor] = {}
    for k in range(recipe.grad_accum):
        part = slice(first + k * micro, first + (k + 1) * micro)
        sync = nullcontext() if d.world == 1 or k == recipe.grad_accum - 1 else model.no_sync()
        with sync:
            loss, metrics = model(
                task.train[idx[part]].to(d.device),
                keys[part].to(d.device),
                position=pos[part].to(d.device),
                batch_size=recipe.batch_size,
                batch_key=batch_key.to(d.device),
            )
            (loss / recipe.grad_accum).backward()
        loss_sum += loss.detach() / recipe.grad_accum
        for name, v in metrics.items():
            metric_sums[name] = metric_sums.get(name, 0) + v / recipe.grad_accum
    return loss_sum, metric_sums


def _record(step: int, loss_sum, metric_sums: dict, lr: float, grad_norm, tok_s: float, elapsed: float) -> dict:
    """One metrics.jsonl record: loss and metrics averaged over ranks."""
    return {
        "step": step,
        "loss": distributed.mean_across(loss_sum).item(),
        "lr": lr,
        "grad_norm": float(grad_norm),
        "tokens_per_s": tok_s,
        "elapsed_s": elapsed,
        **{k: distributed.mean_across(v).item() for k, v in metric_sums.items()},
    }


@dataclass
class _Run:
    """Everything one training run holds: the recipe's task on this rank's device, its optimizer, the run
    folder, and how a global batch splits over ranks and micro-steps."""

    recipe: Recipe
    out: Path
    d: distributed.Dist
    task: object
    objective: torch.nn.Module
    model: torch.nn.Module  # the objective, wrapped in DDP on more than one rank
    optimizer: torch.optim.Optimizer
    info: dict
    order: _Order
    per_rank: int
    micro: int
    start: int

    @property
    def metrics_path(self) -> Path:
        return self.out / "metrics.jsonl"

    @property
    def tokens_per_step(self) -> int:
        return self.recipe.batch_size * self.task.train[0].numel()

    def save(self, step: int) -> None:
        checkpoint.save(
            self.out / "model",
            self.objective,
            recipe=to_dict(self.recipe),
            step=step,
            tokenizer=self.task.tokenizer,
            optimizer=self.optimizer,
            info=self.info,
        )

    def evaluate(self) -> dict:
        return self.objective.evaluate(self.task.valid, seed=self.recipe.seed, max_batches=self.recipe.eval_batches)


def _setup(recipe: Recipe, out: Path, resume: bool) -> _Run:
    """Devices, task, optimizer, the run folder, and the checkpoint to resume from."""
    d = distributed.setup(recipe.device)
    task = recipe.build()
    objective = task.objective.to(d.device)
    optimizer = _optimizer(objective, recipe)
    start = 0
    if resume:
        start = _restore(out, recipe, objective, optimizer, d.main)
    elif d.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.jsonl").write_text("")
    info = {**task.info, "fingerprint": task.fingerprint, "world_size": d.world}
    if d.main:
        (out / "run.json").write_text(json.dumps({"recipe": to_dict(recipe), "info": info}, indent=2))
    per_rank, micro = _micro_size(recipe, d.world)
    model = DDP(objective) if d.world > 1 else objective
    order = _Order(len(task.train), recipe.seed)
    return _Run(recipe, out, d, task, objective, model, optimizer, info, order, per_rank, micro, start)


def _update(run: _Run, step: int):
    """Phases 4-6 of a step: micro-steps, clip, optimizer step. Returns (loss, metrics, grad norm)."""
    r = run.recipe
    loss_sum, metric_sums = _micro_steps(run.model, run.task, r, run.d, run.order, step, run.per_rank, run.micro)
    grad_norm = torch.nn.utils.clip_grad_norm_(run.objective.parameters(), r.clip)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    return loss_sum, metric_sums, grad_norm


def _finish(run: _Run, step: int, train_s: float, stopped_early: bool) -> dict:
    """Final evaluation, checkpoint and summary (rank 0 writes them)."""
    summary = {
        "step": step,
        "train_seconds": train_s,
        "stopped_early": stopped_early,
        "tokens_per_s": run.tokens_per_step * (step - run.start) / max(train_s, 1e-9),
        **run.info,
    }
    if run.d.main:
        summary["eval"] = run.evaluate()
        _log(run.metrics_path, {"step": step, "eval": summary["eval"], "final": True})
        run.save(step)
        (run.out / "summary.json").write_text(json.dumps(summary, indent=2))
    distributed.teardown()
    return summary


def train(
    recipe: Recipe, out: str | Path, *, resume: bool = False, progress: bool = True, stop_at: int | None = None
) -> dict:
    """Train ``recipe`` into the run folder ``out``. ``stop_at`` ends early after that step (as a pre-emption
    would), leaving a checkpoint to resume from. Returns a summary with the final held-out metrics."""
    run = _setup(recipe, Path(out), resume)
    d, start = run.d, run.start
    bar = tqdm(total=recipe.steps, initial=start, disable=not (progress and d.main), unit="step", dynamic_ncols=True,
               mininterval=1.0)  # fmt: skip
    began, stopped_early, step = time.perf_counter(), False, start
    t_last, step_last = began, start
    run.objective.train()
    for step in range(start, recipe.steps):
        if stop_at is not None and step >= stop_at:
            break
        over_budget = recipe.max_minutes > 0 and time.perf_counter() - began > 60 * recipe.max_minutes
        if distributed.any_across(over_budget, d.device):
            stopped_early = True
            break
        # 1. learning rate
        lr = lr_at(step, recipe)
        for g in run.optimizer.param_groups:
            g["lr"] = lr
        # 2. evaluation (rank 0 only; it touches no collective), 3. checkpoint
        if recipe.eval_every and step % recipe.eval_every == 0 and step > start and d.main:
            _log(run.metrics_path, {"step": step, "eval": run.evaluate()})
        if recipe.ckpt_every and step % recipe.ckpt_every == 0 and step > start and d.main:
            run.save(step)
        # 4. micro-steps, 5. clip, 6. optimizer step
        loss_sum, metric_sums, grad_norm = _update(run, step)
        # 7. log
        if (step + 1) % recipe.log_every == 0 or step + 1 == recipe.steps:
            now = time.perf_counter()
            tok_s = run.tokens_per_step * (step + 1 - step_last) / max(now - t_last, 1e-9)
            t_last, step_last = now, step + 1
            record = _record(step + 1, loss_sum, metric_sums, lr, grad_norm, tok_s, now - began)
            if d.main:
                _log(run.metrics_path, record)
                bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{tok_s:,.0f}")
        bar.update(1)
    else:
        step = recipe.steps
    bar.close()
    return _finish(run, step, time.perf_counter() - began, stopped_early)
