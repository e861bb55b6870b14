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
from masklab.train import checkpoint, distributed, fsdp
from masklab.train.recipes.base import RESUMABLE_CHANGES, Recipe, from_dict, to_dict

__all__ = ["train", "trained", "lr_at", "global_batch", "RESUMABLE_CHANGES"]


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


class _Logger:
    """Rank 0's record sink: every record is appended to ``RUN/metrics.jsonl``; with ``log=tensorboard`` its
    numbers also go to TensorBoard event files in ``RUN/tensorboard`` at the record's step (``train/<key>`` for a
    train record, ``eval/<name>`` for an evaluation). A resumed run hides the events past its checkpoint, as it
    drops those records from metrics.jsonl."""

    def __init__(self, out: Path, log: str, start: int):
        self.path = out / "metrics.jsonl"
        self.writer = _summary_writer(out / "tensorboard", start) if log == "tensorboard" else None

    def __call__(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for tag, value in _scalars(record).items():
                self.writer.add_scalar(tag, value, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _scalars(record: dict) -> dict[str, float]:
    """TensorBoard tags of one record: ``eval/<name>`` for an evaluation, ``train/<key>`` for a train record."""
    if "eval" in record:
        return {f"eval/{k}": v for k, v in record["eval"].items()}
    return {f"train/{k}": v for k, v in record.items() if k != "step"}


def _summary_writer(folder: Path, start: int):
    """A TensorBoard writer on ``folder``; resuming from step ``start`` purges the events logged after it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError("log=tensorboard needs the tensorboard package: pip install masklab[log]") from None
    return SummaryWriter(str(folder), purge_step=start + 1 if start else None)


# Recipe fields that change where a run executes and how it logs, never its result.
_HOW = {"device", "parallel", "log", "log_every", "ckpt_every", "eval_every"}


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


def _restore(out: Path, recipe: Recipe, objective, main: bool) -> tuple[int, dict]:
    """Load the checkpoint in ``out/model`` into ``objective`` (unsharded); returns its step and the saved
    ``optimizer.state_dict()``, for the optimizer built after any sharding."""
    ckpt_dir, metrics_path = out / "model", out / "metrics.jsonl"
    meta = checkpoint.verify(ckpt_dir)
    _check_resume(meta, recipe)
    objective.load_model(ckpt_dir)
    optimizer_state = checkpoint.read_optimizer(ckpt_dir)
    start = meta["step"]
    if main and metrics_path.exists():  # drop records past the checkpoint: they will be redone
        kept = [ln for ln in metrics_path.read_text().splitlines() if json.loads(ln)["step"] <= start]
        metrics_path.write_text("".join(ln + "\n" for ln in kept))
    return start, optimizer_state


def _micro_size(recipe: Recipe, world: int) -> tuple[int, int]:
    """(examples per rank, examples per micro-step)."""
    per_rank = recipe.batch_size // world
    if per_rank * world != recipe.batch_size or per_rank % recipe.grad_accum:
        raise ValueError(
            f"batch_size={recipe.batch_size} must split evenly over {world} ranks x "
            f"grad_accum={recipe.grad_accum} micro-steps"
        )
    return per_rank, per_rank // recipe.grad_accum


def _sync(model, last: bool):
    """Context of one micro-step: gradients are reduced over ranks only on the last one (DDP ``no_sync``; FSDP2
    ``set_requires_gradient_sync``, which keeps unsharded gradients accumulating locally until then)."""
    if isinstance(model, fsdp.FSDPModule):
        model.set_requires_gradient_sync(last)
        return nullcontext()
    return nullcontext() if last else model.no_sync()


def _micro_steps(model, task, recipe: Recipe, d, order: _Order, step: int, per_rank: int, micro: int):
    """Forward and backward over this rank's share of the global batch, in grad_accum pieces.
    Returns (mean loss, mean metrics). The objective gets only what every objective needs."""
    idx, keys, pos, batch_key = global_batch(order, step, recipe.batch_size, recipe.seed)
    first = d.rank * per_rank
    loss_sum = torch.zeros((), device=d.device)
    metric_sums: dict[str, torch.Tensor] = {}
    for k in range(recipe.grad_accum):
        part = slice(first + k * micro, first + (k + 1) * micro)
        with _sync(model, d.world == 1 or k == recipe.grad_accum - 1):
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
    model: torch.nn.Module  # the objective, wrapped in DDP on more than one rank (itself when sharded)
    optimizer: torch.optim.Optimizer
    info: dict
    order: _Order
    per_rank: int
    micro: int
    start: int
    shell: torch.nn.Module | None = None  # under FSDP, rank 0's parameter-less copy that checkpoints are written from

    @property
    def sharded(self) -> bool:
        return isinstance(self.objective, fsdp.FSDPModule)

    @property
    def tokens_per_step(self) -> int:
        return self.recipe.batch_size * self.task.train[0].numel()

    def save(self, step: int) -> None:
        """Write the checkpoint; called on rank 0, or on every rank under FSDP, where gathering the full state is a
        collective and rank 0 writes the same one-process checkpoint from its :func:`fsdp.skeleton`."""
        if not self.sharded:
            self._write(step, self.objective, self.optimizer)
            return
        model_state, optimizer_state = fsdp.full_state(self.objective, self.optimizer)
        if self.d.main:
            with fsdp.filled(self.shell, model_state) as full:
                self._write(step, full, optimizer_state)

    def _write(self, step: int, objective, optimizer) -> None:
        checkpoint.save(
            self.out / "model",
            objective,
            recipe=to_dict(self.recipe),
            step=step,
            tokenizer=self.task.tokenizer,
            optimizer=optimizer,
            info=self.info,
        )

    def evaluate(self) -> dict:
        """Held-out metrics; called on rank 0, or on every rank under FSDP (each forward gathers the shards)."""
        return self.objective.evaluate(self.task.valid, seed=self.recipe.seed, max_batches=self.recipe.eval_batches)

    @property
    def collective(self) -> bool:
        """Whether this rank takes part in evaluations and checkpoints: rank 0, or every rank under FSDP."""
        return self.d.main or self.sharded


def _setup(recipe: Recipe, out: Path, resume: bool) -> _Run:
    """Devices, task, optimizer, the run folder, and the checkpoint to resume from. With ``parallel=fsdp`` on more
    than one rank the objective is sharded (:func:`fsdp.shard`) after the checkpoint's weights are loaded into it
    and before the optimizer is built over its shards."""
    d = distributed.setup(recipe.device)
    task = recipe.build()
    sharded = recipe.parallel == "fsdp" and d.world > 1
    objective = task.objective if sharded else task.objective.to(d.device)  # fsdp moves each unit as it shards
    start, optimizer_state = _restore(out, recipe, objective, d.main) if resume else (0, None)
    shell = fsdp.skeleton(objective) if sharded and d.main else None
    if sharded:
        fsdp.shard(objective, d.device)
    optimizer = _optimizer(objective, recipe)
    if optimizer_state is not None and sharded:
        fsdp.load_optimizer(objective, optimizer, optimizer_state)
    elif optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    if not resume and d.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.jsonl").write_text("")
    info = {**task.info, "fingerprint": task.fingerprint, "world_size": d.world}
    if d.main:
        (out / "run.json").write_text(json.dumps({"recipe": to_dict(recipe), "info": info}, indent=2))
    per_rank, micro = _micro_size(recipe, d.world)
    model = DDP(objective) if d.world > 1 and not sharded else objective
    order = _Order(len(task.train), recipe.seed)
    return _Run(recipe, out, d, task, objective, model, optimizer, info, order, per_rank, micro, start, shell)


def _update(run: _Run, step: int):
    """Phases 4-6 of a step: micro-steps, clip, optimizer step. Returns (loss, metrics, grad norm)."""
    r = run.recipe
    # dropout (pretrained models keep theirs) draws from the global RNG: key it on (seed, step, rank), so a resumed
    # run repeats an uninterrupted one; fork_rng leaves the caller's RNG state as it was
    devices = [run.d.device] if run.d.device.type == "cuda" else []
    run.objective.begin_step(step, keyed.example_keys(r.seed, step, [0], device="cpu")[0])  # the same on every rank
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(keyed.example_keys(r.seed, step, [run.d.rank], device="cpu")[0]))
        loss_sum, metric_sums = _micro_steps(run.model, run.task, r, run.d, run.order, step, run.per_rank, run.micro)
    grad_norm = torch.nn.utils.clip_grad_norm_(run.objective.parameters(), r.clip)  # DTensors: the global norm
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    return loss_sum, metric_sums, grad_norm


def _finish(run: _Run, step: int, train_s: float, stopped_early: bool, log: _Logger | None) -> dict:
    """Final evaluation, checkpoint and summary (rank 0 writes them, and closes its ``log``)."""
    summary = {
        "step": step,
        "train_seconds": train_s,
        "stopped_early": stopped_early,
        "tokens_per_s": run.tokens_per_step * (step - run.start) / max(train_s, 1e-9),
        **run.info,
    }
    if run.collective:
        summary["eval"] = run.evaluate()
        run.save(step)
    if run.d.main:
        log({"step": step, "eval": summary["eval"], "final": True})
        log.close()
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
    log = _Logger(run.out, recipe.log, start) if d.main else None
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
        # 2. evaluation, 3. checkpoint: on rank 0 (they touch no collective), or on every rank under FSDP
        if recipe.eval_every and step % recipe.eval_every == 0 and step > start and run.collective:
            evaluation = run.evaluate()
            if d.main:
                log({"step": step, "eval": evaluation})
        if recipe.ckpt_every and step % recipe.ckpt_every == 0 and step > start and run.collective:
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
                log(record)
                bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{tok_s:,.0f}")
        bar.update(1)
    else:
        step = recipe.steps
    bar.close()
    return _finish(run, step, time.perf_counter() - began, stopped_early, log)


def trained(recipe: Recipe, out: str | Path, *, progress: bool = False) -> dict:
    """The summary of ``recipe`` trained into ``out``: a finished run already there is reused if it was trained
    with this recipe (where it ran and how it logged aside), a finished run of another recipe is a ValueError
    naming the fields that differ, and anything else is trained (:func:`train`). What benchmarks and scripts that
    re-run a grid of recipes use, so a result is never reported under settings it was not trained with."""
    out = Path(out)
    if not (out / "summary.json").is_file():
        return train(recipe, out, progress=progress)
    had, want = to_dict(from_dict(checkpoint.read_manifest(out / "model")["recipe"])), to_dict(recipe)
    diff = sorted(k for k in set(had) | set(want) if k not in _HOW and had.get(k) != want.get(k))
    if diff:
        raise ValueError(f"{out} holds a finished run of another recipe (it differs in {', '.join(diff)})")
    return json.loads((out / "summary.json").read_text())
