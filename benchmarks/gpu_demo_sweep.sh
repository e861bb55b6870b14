#!/usr/bin/env bash
# Sample efficiency of the demo recipe, measured on a GPU: loss after a fixed number of steps does not depend on
# the device, so a GPU answers "how many steps does mdm-tiny need" in seconds; CPU wall time is measured on the CPU.
# Usage (device machine): PYTHONPATH=src bash benchmarks/gpu_demo_sweep.sh OUTDIR
set -u
OUT=${1:-runs/gpu_sweep}; mkdir -p "$OUT"
export PYTHONPATH=src MASKLAB_CACHE=runs/mlcache TOKENIZERS_PARALLELISM=false
run() {  # name, overrides...
  local name=$1; shift
  python3 -m masklab train --recipe mdm-tiny --out "$OUT/$name" --no-progress max_minutes=0 "$@" \
    > "$OUT/$name.log" 2>&1
  echo "== $name ($*)"; tail -3 "$OUT/$name.log"
}
python3 -m masklab train --recipe mdm-tiny --out "$OUT/warm" --no-progress steps=1 max_minutes=0 >/dev/null 2>&1
run base &
run lr5e-3 lr=5e-3 &
run lr2e-3 lr=2e-3 &
run strat t_sampling=stratified &
run bs16x600 batch_size=16 steps=600 &
run L256 seq_len=256 batch_size=16 &
run steps1000 steps=1000 &
run steps3000 steps=3000 eval_every=500 &
wait
python3 -m masklab train --recipe mdm --out "$OUT/mdm-small" --no-progress steps=2000 eval_every=500 warmup=200 \
  > "$OUT/mdm-small.log" 2>&1; echo "== mdm small BPE-4096 2000 steps"; tail -3 "$OUT/mdm-small.log"
P=$'def <mask:8>(self, key, default=None):\n    """Return the value for key if key is in the dictionary, else default."""\n    <mask:6> key in self.data:\n        return self.data[key]\n    return <mask:7>\n'
for r in base steps3000 mdm-small; do
  echo "== infill $r"; python3 -m masklab generate --model "$OUT/$r" --seed 0 --prompt "$P" 2>&1 | tail -8
done
grep -h '"eval"' "$OUT"/steps3000/metrics.jsonl | cut -c1-200
