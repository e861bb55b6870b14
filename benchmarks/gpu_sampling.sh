#!/usr/bin/env bash
# Sampling benchmark with properly trained models (the CPU runs in docs/benchmarks.md stop after ~15 steps on a
# shared CPU). Trains mdm-tiny and ar at seq_len=256 for their full 300 steps on the GPU (seconds), then runs
# benchmarks/sampling.py parts A/B on the GPU (timings: CUDA wall time, CPU part C/D/E skipped) and the classify
# task. Usage (device machine, < 120 s): PYTHONPATH=src bash benchmarks/gpu_sampling.sh OUTDIR
set -u
OUT=${1:-runs/gpu_sampling}; mkdir -p "$OUT"
export PYTHONPATH=src MASKLAB_CACHE=runs/mlcache TOKENIZERS_PARALLELISM=false
python3 -m masklab train --recipe mdm-tiny --out "$OUT/mdm" --no-progress seq_len=256 max_minutes=0 \
  > "$OUT/mdm.log" 2>&1 &
python3 -m masklab train --recipe ar --out "$OUT/ar" --no-progress seq_len=256 > "$OUT/ar.log" 2>&1 &
wait
tail -2 "$OUT/mdm.log" "$OUT/ar.log"
python3 benchmarks/sampling.py --mdm "$OUT/mdm" --ar "$OUT/ar" --parts ab --device cuda --batch 8 \
  --ancestral-steps 256 4096 --thresholds 0.9 0.7 0.5 2>&1 | grep -v Loading
python3 -m masklab classify --model "$OUT/mdm" --task stdlib-keywords --n 300 2>&1 | grep -v Loading
