#!/usr/bin/env bash
# What this project measures on a CUDA GPU, in one go (for the lent GPU machine, or your own):
#     bash bench/gpu.sh [all|check|speed|target|suite]        # logs and JSON go to $OUT (default runs/gpu)
# check:  tests/test_cuda.py (CUDA vs CPU, bf16, compile, checkpoints, sampling)
# speed:  bench/train.py on the ~10M-parameter gpu-small preset, bf16 autocast, eager then compiled
# target: the same with compile for 5000 steps: time to nanoGPT's val loss 1.47 (nats/char = nats/byte
#         on this all-ASCII Shakespeare)
# suite:  the whole test suite with CUDA present (what `make test` does on a GPU machine)
set -u
what=${1:-all}
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, platform; print('torch', torch.__version__, '| python', platform.python_version(), '|', torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
run() {  # run NAME SECONDS COMMAND...: log to $OUT/NAME.log, note the exit status
    local name=$1 limit=$2; shift 2
    echo "== $name: $*"
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    echo "== $name: exit $?" | tee -a "$OUT/summary.txt"
    tail -n 25 "$OUT/$name.log"
}
if [[ $what == all || $what == check ]]; then
    run test_cuda 240 $PY -m pytest tests/test_cuda.py -q -rs
fi
if [[ $what == all || $what == speed ]]; then
    run eager 150 $PY bench/train.py --preset gpu-small --iters 500 --json "$OUT/gpu_small_eager.json"
    run compiled 240 $PY bench/train.py --preset gpu-small --iters 500 --compile --json "$OUT/gpu_small_compiled.json"
fi
if [[ $what == all || $what == target ]]; then
    run target 400 $PY bench/train.py --preset gpu-small --compile --iters 5000 --eval-interval 250 \
        --target-val-loss 1.47 --json "$OUT/gpu_small_to_1.47.json"
fi
if [[ $what == suite ]]; then
    run suite 500 $PY -m pytest -q -x -p no:cacheprovider
fi
cat "$OUT/summary.txt"
