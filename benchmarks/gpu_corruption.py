"""GPU check for token corruption: ``PYTHONPATH=src python3 benchmarks/gpu_corruption.py [--json FILE]``.

1. Device invariance. Every keyed strategy must give the same record, bit for bit and field by field, on the
   CPU (the numba kernels where they apply, else numpy or torch) and on CUDA (the dense torch paths). Checked
   over many random settings: batch shapes, rates and counts, mixes, ``can`` masks, int32 and int64 ids, and
   special ids inside and outside the vocabulary; then the patch masks (MAE, BEiT, SimMIM, ColorMAE, HPM,
   referring), frame spans of every span-length law and Ask2Mask on random batches, grids and lengths.
2. Time per batch of masklab's random and whole-word masking on CUDA and on one CPU thread (the dense torch
   path and the numba kernels), beside Hugging Face's masking step, which runs on the CPU only (it builds its
   probability matrix there).

Needs CUDA; takes about a minute (the first CPU call of each numba kernel compiles it).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import time

import torch

from masklab.corrupt import frames, keyed
from masklab.corrupt import patches as P
from masklab.corrupt._backend import use_backend
from masklab.corrupt.diffusion import mdiff4str_noise, mdm_noise, sample_t
from masklab.corrupt.frames import span_mask as frame_span_mask
from masklab.corrupt.guided import score_guided_mask
from masklab.corrupt.meap import meap_mask
from masklab.corrupt.ngram import NgramLexicon, ngram_mask
from masklab.corrupt.replace import electra_mask, sample_replacements
from masklab.corrupt.spans import span_mask
from masklab.corrupt.tokens import random_mask, whole_word_mask


def records(ids, keys, wid, scores, can, cfg, lexicon):
    """(name, record or tensor) for every keyed strategy on one batch."""
    c = dict(mask_id=cfg["mask"], vocab_size=cfg["V"], special_ids=cfg["special"])
    mix, prob = cfg["mix"], cfg["prob"]
    yield "random", random_mask(ids, keys, prob=prob, mix=mix, can=can, **c)
    yield "random count", random_mask(ids, keys, count=cfg["count"], mix=mix, can=can, **c)
    yield "whole_word", whole_word_mask(ids, keys, wid, prob=prob, mix=mix, can=can, **c)
    yield "whole_word count", whole_word_mask(ids, keys, wid, count=cfg["count"], mix=mix, can=can, **c)
    yield "span", span_mask(ids, keys, word_ids=wid, prob=prob, min_gap=1, mix=mix, can=can, **c)
    yield "span poisson", span_mask(ids, keys, prob=prob, lengths="poisson", no_overlap=False, can=can, **c)
    yield "ngram", ngram_mask(ids, keys, lexicon, prob=prob, mix=mix, can=can, **c)
    yield "ngram collapse", ngram_mask(ids, keys, lexicon, prob=prob, collapse=True, can=can, **c)
    yield "meap", meap_mask(ids, keys, mask_id=cfg["mask"], special_ids=cfg["special"], prob=prob)
    yield "mdm", mdm_noise(ids, keys, sample_t(keys), mask_id=cfg["mask"], special_ids=cfg["special"])
    pos, bkey = torch.arange(ids.shape[0], device=ids.device), keys[:1] + 1
    for mode in ("antithetic", "stratified"):
        t = sample_t(keys, mode=mode, position=pos, batch_size=ids.shape[0], batch_key=bkey)
        yield f"mdm {mode}", mdm_noise(ids, keys, t, mask_id=cfg["mask"])
    yield "mdiff4str", mdiff4str_noise(ids, keys, **c)
    yield "guided", score_guided_mask(ids, keys, scores, prob=prob, mode="proportional", mix=mix, can=can, **c)
    yield "guided top", score_guided_mask(ids, keys, scores, prob=prob, mode="top", can=can, **c)
    e = electra_mask(ids, keys, prob=prob, can=can, **c)
    yield "electra", e
    r = slice(0, 4)  # the samplers work on [N, V] float64 rows: four examples keep that small
    logits = torch.linspace(-3, 3, cfg["V"], device=ids.device).expand(4, ids.shape[1], cfg["V"])[: ids[r].shape[0]]
    for method in ("gumbel", "multinomial"):
        out = sample_replacements(logits, ids[r], e.mask[r], keys[r], method=method, banned=cfg["special"])
        yield f"rtd {method}", out
    if ids.shape[1] >= 10:
        lengths = (ids.shape[1] - keys % 7).clamp(min=0)
        yield "frames wav2vec2", frame_span_mask(ids.shape, 0.65, 10, lengths=lengths, keys=keys, device=ids.device)


def differs(a, b) -> str | None:
    """None when two records (every tensor field; None fields must match) or tensors are bit-equal, else the
    name of the first field that differs."""
    if torch.is_tensor(a):
        return None if a.dtype == b.dtype and torch.equal(a, b.cpu()) else "tensor"
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if (x is None) != (y is None) or (x is not None and differs(x, y)):
            return f.name
    return None


def config(i: int, g: torch.Generator) -> dict:
    """Setting i: small and odd shapes first, then BERT-sized ones."""
    V = [60, 1000, 30522][i % 3]
    B = int(torch.randint(1, 65, (), generator=g))
    L = int(torch.randint(1, 600, (), generator=g)) if i % 4 else 512
    rand = float(torch.rand((), generator=g)) * 0.3
    special = [0, 1, 2, 3, V + 1, V + 5000] if V < 1000 else [0, 100, 101, 102, 103, V + 3]
    mask = 3 if V < 1000 else 103
    return dict(
        V=V,
        B=B,
        L=L,
        prob=[0.15, 0.5, 0.01, 1.0][i % 4],
        mix=(0.8 - rand, 0.1 + rand, 0.1),
        count=int(torch.randint(0, L + 1, (), generator=g)),
        special=special,
        mask=mask,
        int32=i % 5 == 0,
    )


def batch(cfg: dict, g: torch.Generator):
    B, L, V = cfg["B"], cfg["L"], cfg["V"]
    ids = torch.randint(0, V + 8, (B, L), generator=g)  # some ids past V, ordinary and special
    ids[torch.rand(B, L, generator=g) < 0.03] = cfg["special"][-1]
    ids[:, 0] = cfg["special"][1 if V >= 1000 else 0]
    if cfg["int32"]:
        ids = ids.int()
    wid = (torch.rand(B, L, generator=g) < 0.6).long().cumsum(1)
    wid[torch.rand(B, L, generator=g) < 0.05] = -1
    can = torch.rand(B, L, generator=g) < 0.9
    return ids, wid, can, torch.rand(B, L, generator=g)


def dense_torch_paths(on: bool):
    """With ``on`` (the CPU dry run), the second pass takes the dense torch paths that CUDA takes."""
    return use_backend("torch") if on else contextlib.nullcontext()


def invariance(n_configs: int, device: str) -> dict:
    g = torch.Generator().manual_seed(0)
    lexicons = {}
    failures, checked = {}, {}
    for i in range(n_configs):
        cfg = config(i, g)
        ids, wid, can, scores = batch(cfg, g)
        keys = keyed.example_keys(i, 3, range(100, 100 + cfg["B"]))
        if cfg["V"] not in lexicons:
            corpus = torch.randint(4, 40, (400, 64), generator=torch.Generator().manual_seed(1))
            lexicons[cfg["V"]] = NgramLexicon.build(corpus, cfg["V"], size=200, special_ids=cfg["special"])
        lex = lexicons[cfg["V"]]
        cpu = dict(records(ids, keys, wid, scores, can, cfg, lex))
        dev = [t.to(device) for t in (ids, keys, wid, scores, can)]
        lex_dev = {f.name: getattr(lex, f.name) for f in dataclasses.fields(lex)}
        lex_dev = NgramLexicon(**{k: v.to(device) if torch.is_tensor(v) else v for k, v in lex_dev.items()})
        with dense_torch_paths(device == "cpu"):
            gpu = dict(records(*dev, cfg, lex_dev))
        for name in cpu:
            checked[name] = checked.get(name, 0) + 1
            if field := differs(cpu[name], gpu[name]):
                where = {k: v for k, v in cfg.items() if k != "special"}
                failures.setdefault(name, []).append({"field": field, **where})
    for name in checked:
        bad = len(failures.get(name, []))
        fields = sorted({f["field"] for f in failures.get(name, [])})
        print(f"{name:18s} CPU == {device} in {checked[name] - bad}/{checked[name]} settings", *fields)
    return {"checked": checked, "failures": failures}


def best_ms(fn, n: int, sync: bool) -> float:
    """Best of 5 runs of ``n`` calls, in ms per call (CUDA synchronized around each run)."""
    fn()
    best = float("inf")
    for _ in range(5):
        if sync:
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(n):
            fn()
        if sync:
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e3


def bert_like_collator():
    """HF's MLM collator over a 30,522-id WordPiece-sized vocabulary with BERT's special ids (built here:
    the device machine reaches no hub)."""
    from tokenizers import Tokenizer, models
    from transformers import BertTokenizerFast, DataCollatorForLanguageModeling

    vocab = {f"[unused{i}]": i for i in range(30522)}
    vocab.update({"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103})
    names = dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    tok = BertTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="[UNK]")), **names)
    return DataCollatorForLanguageModeling(tok, mlm_probability=0.15, seed=0)


def time_size(hf, B: int, L: int, device: str) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30522, (B, L), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    stm = torch.zeros(B, L, dtype=torch.long)
    stm[:, 0] = stm[:, -1] = 1
    wid = torch.arange(L).expand(B, L) // 2
    keys = keyed.example_keys(0, 0, range(B))
    d = dict(mask_id=103, vocab_size=30522, special_ids=[0, 100, 101, 102, 103])
    ic, kc, wc = ids.to(device), keys.to(device), wid.to(device)
    n, sync = (200 if B * L <= 32 * 512 else 50), device == "cuda"
    return {
        "HF step, CPU": best_ms(lambda: hf.torch_mask_tokens(ids.clone(), special_tokens_mask=stm), n, False),
        "random, CPU": best_ms(lambda: random_mask(ids, keys, **d), n, False),
        f"random, {device}": best_ms(lambda: random_mask(ic, kc, **d), n, sync),
        "whole_word, CPU": best_ms(lambda: whole_word_mask(ids, keys, wid, **d), n, False),
        f"whole_word, {device}": best_ms(lambda: whole_word_mask(ic, kc, wc, **d), n, sync),
    }


def grid_masks(keys, grid, dev, g_loss, g_region, B, T, lengths):
    """(name, bool mask) for every keyed patch and frame strategy; tensors come on ``dev``."""
    yield "patches random", P.random_patches(grid, 0.75, keys=keys).mask
    yield "patches random ids", P.random_patches(grid, 0.75, keys=keys).ids_restore
    yield "patches block", P.block_patches(grid, 0.4, keys=keys, min_block=4).mask
    yield "patches simmim", P.simmim_patches(grid, 0.6, cell=2, keys=keys).mask
    for color in ("white", "green", "red"):
        yield f"patches colormae-{color}", P.colormae_patches(grid, color, 0.75, keys=keys).mask
    yield "patches hpm", P.hpm_patches(g_loss.to(dev), grid, 0.75, progress=0.5, keys=keys).mask
    yield "patches referring", P.referring_patches(grid, g_region.to(dev), ratio=0.6, keys=keys).mask
    ln = lengths.to(dev)
    for mt in ("static", "uniform", "normal", "poisson"):
        yield f"frames {mt}", frames.span_mask((B, T), 0.5, 5, lengths=ln, mask_type=mt, mask_other=2, keys=keys)
    yield "frames no_overlap", frames.span_mask((B, T), 0.5, 5, lengths=ln, no_overlap=True, min_space=1, keys=keys)
    yield "frames same_count", frames.span_mask((B, T), 0.5, 5, lengths=ln, same_count=True, keys=keys)
    conf = (torch.arange(B * T, dtype=torch.float32).reshape(B, T) * 0.618).remainder(1.0)  # any confidences
    for temp in (1.0, 0.3):
        yield (
            f"frames ask2mask t={temp}",
            frames.ask2mask(conf.to(dev), 0.5, 5, lengths=ln, temperature=temp, keys=keys),
        )


def grid_invariance(n_configs: int, device: str) -> dict:
    """Patch masks (MAE, BEiT, SimMIM, ColorMAE, HPM, referring) and frame spans on the CPU and ``device``."""
    g = torch.Generator().manual_seed(1)
    failures, checked = {}, {}
    for i in range(n_configs):
        B = int(torch.randint(1, 48, (), generator=g))
        grid = [(14, 14), (6, 10), (16, 16)][i % 3]
        T = int(torch.randint(20, 400, (), generator=g))
        keys = keyed.example_keys(i, 1, range(B))
        loss = torch.rand(B, grid[0] * grid[1], generator=g)
        region = torch.rand(B, *grid, generator=g) < 0.3
        lengths = torch.randint(10, T + 1, (B,), generator=g)
        cpu = dict(grid_masks(keys, grid, "cpu", loss, region, B, T, lengths))
        with dense_torch_paths(device == "cpu"):
            dev = dict(grid_masks(keys.to(device), grid, device, loss, region, B, T, lengths))
        for name in cpu:
            checked[name] = checked.get(name, 0) + 1
            if field := differs(cpu[name], dev[name]):
                failures.setdefault(name, []).append({"field": field, "B": B, "grid": grid, "T": T})
    for name in checked:
        bad = len(failures.get(name, []))
        fields = sorted({f["field"] for f in failures.get(name, [])})
        print(f"{name:24s} CPU == {device} in {checked[name] - bad}/{checked[name]} settings", *fields)
    return {"checked": checked, "failures": failures}


def timings(device: str) -> list[dict]:
    torch.set_num_threads(1)
    hf, rows = bert_like_collator(), []
    for B, L in ((32, 128), (32, 512), (256, 512)):
        for what, ms in time_size(hf, B, L, device).items():
            rows.append({"B": B, "L": L, "what": what, "ms": ms})
            print(f"[{B:3d}, {L}] {what:18s} {ms:8.3f} ms per batch")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=int, default=40)
    ap.add_argument("--json", default=None)
    ap.add_argument("--device", default="cuda", help="cpu: a dry run against the dense torch paths")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("needs CUDA (or --device cpu for a dry run)")
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu (dry run)"
    print(f"torch {torch.__version__}, {name}")
    out = {"device": name, "invariance": invariance(args.configs, args.device)}
    out["grid_invariance"] = grid_invariance(args.configs, args.device)
    out["timings"] = timings(args.device)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
