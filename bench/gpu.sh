#!/usr/bin/env bash
# What this project measures on a CUDA GPU, in one go, offline (docs/gpu.md explains every part):
#     OUT=runs/gpu bash bench/gpu.sh [all|PART...]     # default: all, the 10-minute run
# Parts of `all`, in order, each with its own time budget (below):
#   nvidia_smi  the GPU's name, memory, driver and clocks
#   torch_info  torch and CUDA versions, the device, whether bf16 is supported
#   test_cuda   tests/test_cuda.py and tests/test_bench_train.py (CUDA vs CPU, bf16, compile, ...)
#   eager       bench/train.py on the ~10M-parameter gpu-small preset, bf16 autocast, no compile
#   compiled    the same with --compile (compilation inside the budget)
#   target      compiled, 5000 steps: time to nanoGPT's val loss 1.47 (nats/byte on Shakespeare)
# Parts outside `all`, each run on its own (`bash bench/gpu.sh grid`):
#   grid        the mismatch grid, gpu preset, GRID_JOBS ranks sharing the GPU -> $OUT/mismatch-gpu
#   suite       the whole test suite with CUDA present
# Every figure goes to $OUT/results.json (merged by bench/gpu_results.py, which tolerates missing
# parts); each part's output to $OUT/PART.log. A part that fails or runs out of time does not stop
# the others; the summary names it, and the exit status is 1.
set -u
OUT=${OUT:-runs/gpu}
PY=${PYTHON:-python3}
GRID_JOBS=${GRID_JOBS:-4}
export PYTHONUNBUFFERED=1

# Seconds per part. At budget - GRACE (at most half the budget) a part gets SIGINT (training stops after its step and still
# writes its figures; pytest prints what ran), at budget SIGKILL. The parts of `all`, merge
# included, must add up to less than TOTAL_BUDGET (tests/test_gpu_script.py checks it).
TOTAL_BUDGET=600
GRACE=${GRACE:-15}
BUDGET_nvidia_smi=${BUDGET_nvidia_smi:-10}
BUDGET_torch_info=${BUDGET_torch_info:-20}
BUDGET_test_cuda=${BUDGET_test_cuda:-120}
BUDGET_eager=${BUDGET_eager:-60}
BUDGET_compiled=${BUDGET_compiled:-120}
BUDGET_target=${BUDGET_target:-240}
BUDGET_merge=${BUDGET_merge:-15}
BUDGET_grid=${BUDGET_grid:-540}
BUDGET_suite=${BUDGET_suite:-500}
ALL_PARTS=(nvidia_smi torch_info test_cuda eager compiled target)
OTHER_PARTS=(grid suite)

if [[ $# -eq 0 || $1 == all ]]; then
    parts=("${ALL_PARTS[@]}")
else
    parts=("$@")
fi
for part in "${parts[@]}"; do
    if [[ " ${ALL_PARTS[*]} ${OTHER_PARTS[*]} " != *" $part "* ]]; then
        echo "bench/gpu.sh: error: unknown part '$part'; expected all or some of: ${ALL_PARTS[*]} ${OTHER_PARTS[*]}" >&2
        exit 2
    fi
done

mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)  # absolute, then run from the repository root
cd "$(dirname "$0")/.." || exit 2
rm -f "$OUT/parts.tsv" "$OUT/budgets.tsv" "$OUT/results.json"
planned=0
for part in "${parts[@]}" merge; do
    budget_name=BUDGET_$part
    echo -e "$part\t${!budget_name}" >>"$OUT/budgets.tsv"
    planned=$((planned + ${!budget_name}))
done
echo "== bench/gpu.sh: ${parts[*]} in at most $planned s (budgets in $OUT/budgets.tsv), output in $OUT"
if [[ $planned -ge $TOTAL_BUDGET ]]; then
    echo "== note: the budgets add up to $planned s, not under $TOTAL_BUDGET s"
fi

run() {  # run PART COMMAND...: $OUT/PART.log gets the output, $OUT/parts.tsv the exit status and seconds
    local part=$1 budget_name=BUDGET_$1
    shift
    local budget=${!budget_name} started=$SECONDS status
    local grace=$((GRACE < budget / 2 ? GRACE : budget / 2))  # a short part gets half its budget to stop
    echo "== $part (budget ${budget} s): $*"
    timeout --signal=INT --kill-after="$grace" "$((budget - grace))" "$@" >"$OUT/$part.log" 2>&1
    status=$?
    echo -e "$part\t$status\t$((SECONDS - started))\t$budget" >>"$OUT/parts.tsv"
    tail -n 25 "$OUT/$part.log"
    echo "== $part: exit $status after $((SECONDS - started)) s"
}

TRAIN=(bench/train.py --preset gpu-small --warmup-iters 100)
for part in "${parts[@]}"; do
    case $part in
    nvidia_smi) run nvidia_smi nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm \
        --format=csv ;;
    torch_info) run torch_info "$PY" bench/gpu_results.py describe --json "$OUT/torch_info.json" ;;
    test_cuda) run test_cuda "$PY" -m pytest tests/test_cuda.py tests/test_bench_train.py -q -rs -p no:cacheprovider \
        --junitxml="$OUT/test_cuda.xml" ;;
    eager) run eager "$PY" "${TRAIN[@]}" --iters 600 --json "$OUT/eager.json" ;;
    compiled) run compiled "$PY" "${TRAIN[@]}" --iters 600 --compile --json "$OUT/compiled.json" ;;
    target) run target "$PY" "${TRAIN[@]}" --iters 5000 --compile --eval-interval 250 --target-val-loss 1.47 \
        --json "$OUT/target.json" ;;
    grid) run grid "$PY" -m minilm.mismatch --preset gpu --jobs "$GRID_JOBS" --out "$OUT/mismatch-gpu" --overwrite ;;
    suite) run suite "$PY" -m pytest -q -p no:cacheprovider --junitxml="$OUT/suite.xml" ;;
    esac
done

echo "== merge: $OUT/results.json"
timeout --kill-after=2 "$BUDGET_merge" "$PY" bench/gpu_results.py merge "$OUT"
status=$?  # 0: every part ran clean, 1: some did not (named above), else the merge itself broke
if [[ ! -f $OUT/results.json ]]; then
    echo "== merge failed (exit $status); the parts' exit status, seconds and budget:"
    cat "$OUT/parts.tsv"
    exit 1
fi
exit "$status"
