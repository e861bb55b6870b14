"""parallel=fsdp (FSDP2 fully_shard) under torchrun with 2 CPU processes (gloo) follows the 1-process loss curve,
writes a one-process checkpoint (full weights, full optimizer state) and resumes from it."""

import json

import pytest
import torch
from safetensors.torch import load_file

from masklab.train import checkpoint


def _curve(run, key="loss"):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r[key] for r in rows if key in r}


def _close(one: dict, two: dict, tol: float = 1e-4) -> None:
    assert one.keys() == two.keys(), (one, two)
    for k in one:
        assert abs(one[k] - two[k]) <= tol * max(1.0, abs(one[k])), (one, two)


@pytest.mark.slow
def test_fsdp_on_two_ranks_matches_one(small_corpus, tmp_path, launch):
    common = ["--data", str(small_corpus), "--no-progress", "log_every=1", "max_minutes=0", "device=cpu"]
    new = ["train", "--recipe", "mdm-tiny", *common, "preset=micro", "seq_len=32", "batch_size=8", "grad_accum=2"]
    new += ["steps=8", "warmup=2", "eval_every=4", "ckpt_every=4", "eval_batches=2"]
    more = ["train", "--resume", *common, "steps=10"]  # continue both runs past their end
    one, two = tmp_path / "one", tmp_path / "two"
    launch([*new, "--out", str(one)])
    launch([*new, "parallel=fsdp", "--out", str(two)], ranks=2)
    assert len(_curve(one)) == 8
    _close(_curve(one), _curve(two))
    _close(_curve(one, "grad_norm"), _curve(two, "grad_norm"))  # clipping sees the global norm of the shards
    assert json.loads((two / "summary.json").read_text())["world_size"] == 2

    # the checkpoint rank 0 wrote is a one-process one: the same files, and the weights and AdamW moments of the
    # 1-process run up to float reduction order (after 8 steps both differ by about 1e-7, one ulp of the weights)
    ref, got = checkpoint.load(one), checkpoint.load(two)
    assert got.manifest["files"].keys() == ref.manifest["files"].keys()
    a, b = ref.model.state_dict(), got.model.state_dict()
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=0, atol=1e-5) for k in a)
    oa, ob = (load_file(r / "model" / "optimizer.safetensors") for r in (one, two))
    assert oa.keys() == ob.keys() and all(torch.allclose(oa[k], ob[k], rtol=0, atol=1e-6) for k in oa)

    # resuming under fsdp loads the full state back into the shards: the curve goes on as the 1-process one's
    launch([*more, "--out", str(one)])
    launch([*more, "--out", str(two)], ranks=2)
    assert len(_curve(one)) == 10
    _close(_curve(one), _curve(two))
