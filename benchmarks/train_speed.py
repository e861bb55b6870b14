"""Training-loop speed: ``masklab train`` vs ``transformers.Trainer``, same model, data, masking and batch.

    .venv/bin/python benchmarks/train_speed.py [--steps 40] [--rounds 3] [--skip 5] [--threads 2]
    .venv/bin/python benchmarks/train_speed.py --profile 20      # also split one step into its phases

Both sides train the MLM recipe (``--recipe mlm``, shrunk by ``--set`` to the tiny preset, 32 x 128 windows by
default) in this process on the CPU with the same torch thread count:

- masklab: ``masklab.train.loop.train`` on the recipe with ``eval_every=0 ckpt_every=0`` and
  ``log_every=skip``, so metrics.jsonl marks the end of step ``skip``.
- anchor: ``transformers.Trainer`` on the same ``ModernBertForMaskedLM`` (the recipe's ``build()``, same init
  seed), the same windows (examples ``{"input_ids", "idx"}``, ``remove_unused_columns=False``), masklab's
  ``MLMCollator`` as ``data_collator`` (BERT 80/10/10 at the recipe's rate, keyed on (seed, epoch, index), the
  masks of masklab's objective bit for bit; checked below), the same batch, AdamW lr / beta2 / weight decay,
  warm-up then cosine to the same floor, gradient clip; no evaluation, no checkpoint, no logging, no workers.

Timed on each side: the training loop only, from its first step to its last (masklab: its own ``train_seconds``,
which starts after setup; Trainer: ``on_train_begin`` to ``on_train_end`` of a callback, which leaves out
dataloader and optimizer construction; ``train_runtime``, the whole ``trainer.train()``, is printed too), and the
steady part after the first ``skip`` steps. Tokens = batch x seq_len per step on both sides. One untimed
warm-up run of each side comes first; then the rounds alternate masklab / Trainer and the medians are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402

from masklab.collate import MLMCollator  # noqa: E402
from masklab.corrupt import keyed  # noqa: E402
from masklab.corrupt.strategies import TOKEN  # noqa: E402
from masklab.train.loop import train  # noqa: E402
from masklab.train.recipes.base import apply_overrides, get_recipe  # noqa: E402

SHAPE = ["preset=tiny", "seq_len=128", "batch_size=32"]


class Windows(torch.utils.data.Dataset):
    """The recipe's [N, L] training windows as examples with their index (the collator keys masks on it)."""

    def __init__(self, windows: torch.Tensor):
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.windows[i], "idx": i}


def collator(recipe, task) -> MLMCollator:
    mix = (recipe.mask_frac, recipe.random_frac, 1.0 - recipe.mask_frac - recipe.random_frac)
    return MLMCollator(task.tokenizer, "random", prob=recipe.mask_prob, seed=recipe.seed, mix=mix)


def check_same_masks(recipe, task) -> None:
    """The collator's batch equals masklab's objective's corruption of the same windows and keys."""
    idx = torch.arange(recipe.batch_size) * 7
    out = collator(recipe, task)([Windows(task.train)[int(i)] for i in idx])
    obj = task.objective
    keys = keyed.train_keys(recipe.seed, 0, idx)
    c = TOKEN.get("random")(task.train[idx], keys, obj.info, None, prob=obj.prob, mix=obj.mix)
    if not (torch.equal(out["input_ids"], c.inputs) and torch.equal(out["labels"], c.targets)):
        raise AssertionError("MLMCollator and masklab's MLM objective disagree: the masking work is not the same")


def run_masklab(recipe, steps: int, skip: int) -> dict:
    r = apply_overrides(recipe, [f"steps={steps}", "eval_every=0", "ckpt_every=0", f"log_every={skip}",
                                 "eval_batches=1", "device=cpu"])  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        summary = train(r, out, progress=False)
        wall = time.perf_counter() - t0
        records = [json.loads(ln) for ln in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    at = {rec["step"]: rec["elapsed_s"] for rec in records if "elapsed_s" in rec}
    return {"loop_s": summary["train_seconds"], "steady_s": at[steps] - at[skip], "call_s": wall}


class _Clock(transformers.TrainerCallback):
    """Wall-clock marks: loop begin, end of step ``skip``, loop end."""

    def __init__(self, skip: int):
        self.skip, self.marks = skip, {}

    def on_train_begin(self, args, state, control, **kw):
        self.marks["begin"] = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.skip:
            self.marks["skip"] = time.perf_counter()

    def on_train_end(self, args, state, control, **kw):
        self.marks["end"] = time.perf_counter()


def trainer_for(recipe, steps: int, out: str, callbacks=()) -> transformers.Trainer:
    task = recipe.build()  # a fresh model, initialised exactly as masklab's run initialises it
    args = transformers.TrainingArguments(
        output_dir=out,
        max_steps=steps,
        per_device_train_batch_size=recipe.batch_size,
        learning_rate=recipe.lr,
        warmup_steps=recipe.warmup,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": recipe.min_lr_ratio},
        weight_decay=recipe.weight_decay,
        adam_beta2=recipe.beta2,
        max_grad_norm=recipe.clip,
        optim="adamw_torch",
        seed=recipe.seed,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    trainer = transformers.Trainer(
        model=task.objective.model,
        args=args,
        train_dataset=Windows(task.train),
        data_collator=collator(recipe, task),
        callbacks=list(callbacks),
    )
    trainer.remove_callback(transformers.PrinterCallback)  # the one print of the final metrics
    return trainer


def run_trainer(recipe, steps: int, skip: int) -> dict:
    clock = _Clock(skip)
    with tempfile.TemporaryDirectory() as out:
        trainer = trainer_for(recipe, steps, out, [clock])
        result = trainer.train()
    m = clock.marks
    runtime = result.metrics["train_runtime"]
    return {"loop_s": m["end"] - m["begin"], "steady_s": m["end"] - m["skip"], "call_s": runtime}


def profile(recipe, steps: int) -> None:
    """Median ms per phase of one step, each side's own code, phases separated by the clock (CPU: synchronous).

    masklab (``MLM.forward`` written out): batch indices and keys (``global_batch``), gather of the windows,
    masking, model forward, loss + masked accuracy, backward, clip, optimizer step + zero_grad. Trainer: next
    batch from its DataLoader (sampler, dataset, collator), forward (model + loss), backward, clip, optimizer
    step + scheduler + zero_grad.
    """
    import torch.nn.functional as F

    from masklab.corrupt import IGNORE_INDEX
    from masklab.objectives.base import logits_of
    from masklab.train.loop import _optimizer, _Order, global_batch

    task = recipe.build()
    obj, model = task.objective, task.objective.model
    obj.train()
    opt, order = _optimizer(obj, recipe), _Order(len(task.train), recipe.seed)
    ours: dict[str, list[float]] = {}

    def mark(d, k, t):
        now = time.perf_counter()
        d.setdefault(k, []).append(now - t)
        return now

    for step in range(steps):
        t = time.perf_counter()
        idx, keys, _, _ = global_batch(order, step, recipe.batch_size, recipe.seed)
        t = mark(ours, "indices + keys", t)
        batch = task.train[idx]
        t = mark(ours, "gather windows", t)
        c = TOKEN.get("random")(batch, keys, obj.info, None, prob=obj.prob, mix=obj.mix)
        t = mark(ours, "mask", t)
        logits = logits_of(model(input_ids=c.inputs))
        t = mark(ours, "forward (model)", t)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), c.targets.flatten(), ignore_index=IGNORE_INDEX)
        ((logits.argmax(-1) == c.targets) & c.mask).sum() / c.mask.sum().clamp(min=1)
        t = mark(ours, "loss + metrics", t)
        loss.backward()
        t = mark(ours, "backward", t)
        torch.nn.utils.clip_grad_norm_(obj.parameters(), recipe.clip)
        t = mark(ours, "clip", t)
        opt.step()
        opt.zero_grad(set_to_none=True)
        mark(ours, "optimizer", t)
    with tempfile.TemporaryDirectory() as out:
        trainer = trainer_for(recipe, steps, out)
        trainer.create_optimizer_and_scheduler(num_training_steps=steps)
        hf_model, hopt, sched = trainer.model, trainer.optimizer, trainer.lr_scheduler
        hf_model.train()
        it = iter(trainer.get_train_dataloader())
        theirs: dict[str, list[float]] = {}
        for _ in range(steps):
            t = time.perf_counter()
            inputs = next(it)
            t = mark(theirs, "dataloader + collate", t)
            loss = hf_model(**inputs).loss
            t = mark(theirs, "forward (model + loss)", t)
            loss.backward()
            t = mark(theirs, "backward", t)
            torch.nn.utils.clip_grad_norm_(hf_model.parameters(), recipe.clip)
            t = mark(theirs, "clip", t)
            hopt.step()
            sched.step()
            hopt.zero_grad(set_to_none=True)
            mark(theirs, "optimizer", t)
    print(f"\nPer-step phases, median ms over {steps} steps (first 3 dropped), each side's code outside its loop:")
    for name, d in (("masklab", ours), ("Trainer", theirs)):
        med = {k: 1e3 * statistics.median(v[3:]) for k, v in d.items()}
        print(f"  {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in med.items()) + f"; sum {sum(med.values()):.1f}")


def tps(tokens: int, seconds: float) -> float:
    return tokens / max(seconds, 1e-9)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="mlm")
    ap.add_argument("--set", nargs="*", default=SHAPE, help="recipe overrides key=value")
    ap.add_argument("--steps", type=int, default=40, help="timed steps per run")
    ap.add_argument("--rounds", type=int, default=3, help="timed runs of each side, alternating")
    ap.add_argument("--skip", type=int, default=5, help="first steps left out of the steady rate")
    ap.add_argument("--warmup-steps", type=int, default=8, help="steps of the untimed warm-up run of each side")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", type=int, default=0, help="steps of the per-phase profile (0: none)")
    args = ap.parse_args(argv)
    if not 0 < args.skip < args.steps:
        raise SystemExit("--skip must be in [1, --steps)")
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    recipe = apply_overrides(get_recipe(args.recipe), args.set)
    task = recipe.build()
    check_same_masks(recipe, task)
    L = task.train.shape[1]
    tokens = recipe.batch_size * L
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {args.threads} threads; "
          f"recipe {args.recipe} {' '.join(args.set)}: {type(task.objective.model).__name__}, "
          f"batch {recipe.batch_size} x {L}, {args.steps} steps per run, steady = after step {args.skip}")  # fmt: skip
    print("masks: MLMCollator (Trainer's data_collator) == masklab's MLM objective, bit for bit")
    del task
    run_masklab(recipe, args.warmup_steps, min(args.skip, args.warmup_steps - 1))
    run_trainer(recipe, args.warmup_steps, min(args.skip, args.warmup_steps - 1))
    rows = {"masklab": [], "Trainer": []}
    for k in range(args.rounds):
        for name, fn in (("masklab", run_masklab), ("Trainer", run_trainer)):
            r = fn(recipe, args.steps, args.skip)
            rows[name].append(r)
            print(f"round {k + 1} {name:8s}: loop {r['loop_s']:.2f} s, steady {r['steady_s']:.2f} s, "
                  f"whole call {r['call_s']:.2f} s", flush=True)  # fmt: skip
    n_steady = args.steps - args.skip
    med = {
        name: {
            "loop": statistics.median(tps(tokens * args.steps, r["loop_s"]) for r in rs),
            "steady": statistics.median(tps(tokens * n_steady, r["steady_s"]) for r in rs),
        }
        for name, rs in rows.items()
    }
    print(f"\nmedian tokens/s over {args.rounds} rounds")
    print(f"| side | loop, all {args.steps} steps | steady, steps {args.skip + 1}-{args.steps} |\n|---|---|---|")
    for name, m in med.items():
        print(f"| {name} | {m['loop']:,.0f} | {m['steady']:,.0f} |")
    ratio = {k: med["masklab"][k] / med["Trainer"][k] for k in ("loop", "steady")}
    print(f"| masklab / Trainer | {ratio['loop']:.3f}x | {ratio['steady']:.3f}x |")
    pairs = list(zip(rows["masklab"], rows["Trainer"], strict=True))
    paired = {k: statistics.median(b[f"{k}_s"] / a[f"{k}_s"] for a, b in pairs) for k in ("loop", "steady")}
    print(f"| same, median of the rounds' ratios | {paired['loop']:.3f}x | {paired['steady']:.3f}x |")
    print(
        "whole call (per round above): masklab = train() with setup, final eval and checkpoint; Trainer = its "
        "train_runtime (trainer.train() without building the Trainer)"
    )
    if args.profile:
        profile(recipe, args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
