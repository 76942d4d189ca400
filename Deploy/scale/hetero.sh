#!/usr/bin/env bash
# One worker at half speed against the share-by-speed ideal (issue 14), on one machine over ipc.
#
# Each round runs three short trainings: the fast worker alone (T1), the slow one alone (Th), then both. The slow
# worker runs `worker --fault-slowdown 2`: after each order it sleeps as long as the order took, so it is half as
# fast and uses no more CPU. The ideal for both is 1 / (1/T1 + 1/Th), from the same round's solo runs (this
# machine's speed drifts between rounds). With two CPUs or more the fast worker is pinned to CPU 0, and the slow
# worker and the coordinator to CPU 1 (the slow one leaves half of it idle).
#
#   bash Deploy/scale/hetero.sh [--charrnn BIN] [--rounds R] [--tree] [--units H] [--embed E] [--shards S]
#                               [--batch B] [--steps N] [--skip K] [--data FILE]
#
# Prints one table row per round: the solo times, the ideal, both's median step, its ratio to the ideal and the
# fast worker's share of the shards against its share by speed. Step times: the median of the step-to-step
# wall_time differences in metrics.jsonl after the first K (default 5: steps 7 to 22 of 22). --tree: the workers
# relay the weights and sum the gradients up the tree (--relay-fanout 2).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
charrnn="$here/../../.build/release/charrnn"
rounds=3 tree=0 units=512 embed=32 shards=12 batch=96 steps=22 skip=5
data="$here/../../../shared/data/tinyshakespeare.txt"
while [ $# -gt 0 ]; do
    case "$1" in
        --charrnn) charrnn=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --tree) tree=1; shift ;;
        --units) units=$2; shift 2 ;;
        --embed) embed=$2; shift 2 ;;
        --shards) shards=$2; shift 2 ;;
        --batch) batch=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --skip) skip=$2; shift 2 ;;
        --data) data=$2; shift 2 ;;
        *) echo "error: unknown option $1 (see the comment at the top of $0)" >&2; exit 2 ;;
    esac
done
[ -x "$charrnn" ] || { echo "error: no charrnn at $charrnn (swift build -c release, or --charrnn BIN)" >&2; exit 2; }
[ -f "$data" ] || { echo "error: no training text at $data (--data FILE)" >&2; exit 2; }
[ "$skip" -lt "$((steps - 1))" ] || { echo "error: --skip $skip leaves no step of --steps $steps to measure" >&2; exit 2; }

if [ "$(nproc)" -ge 2 ]; then fastCPU=(taskset -c 0); slowCPU=(taskset -c 1); else fastCPU=(); slowCPU=(); fi
work=$(mktemp -d /tmp/charrnn-hetero.XXXXXX)
trap 'pkill -f "$work/" 2>/dev/null || true; rm -rf "$work"' EXIT

# run NAME KIND... : one training with a worker per KIND (fast or slow); prints "SECONDS FAST_SHARDS TOTAL_SHARDS".
run() {
    local dir="$work/$1"; shift
    mkdir -p "$dir"
    local fanout=(); [ $tree = 1 ] && fanout=(--relay-fanout 2)
    "${slowCPU[@]}" "$charrnn" coordinator --bind "ipc://$dir/c.sock" --data "$data" --checkpoint-dir "$dir/ckpt" \
        --min-workers $# --threads 1 --embed "$embed" --units "$units" --batch "$batch" --seq 100 --shards "$shards" \
        --seed 3 --log-every 1 --steps "$steps" --deadline 120 "${fanout[@]}" > "$dir/coordinator.log" 2>&1 &
    local coordinator=$! k=0
    for kind in "$@"; do
        local pin=("${fastCPU[@]}") extra=()
        [ "$kind" = slow ] && { pin=("${slowCPU[@]}"); extra=(--fault-slowdown 2); }
        [ $tree = 1 ] && extra+=(--relay "ipc://$dir/r$k.sock")
        "${pin[@]}" "$charrnn" worker --connect "ipc://$dir/c.sock" --threads 1 --name "$kind$k" "${extra[@]}" \
            > "$dir/worker$k.log" 2>&1 &
        k=$((k + 1))
    done
    if ! wait $coordinator; then
        echo "error: the coordinator of run $(basename "$dir") failed:" >&2; tail -5 "$dir/coordinator.log" >&2; exit 1
    fi
    # The workers leave when the coordinator ends; do not let a straggling one share the next run's CPUs.
    sleep 0.5; pkill -f "$dir/" 2>/dev/null || true; wait
    python3 - "$dir/ckpt" "$skip" <<'PY'
import json, statistics, sys
ckpt, skip = sys.argv[1], int(sys.argv[2])
times = [json.loads(l)["wall_time"] for l in open(f"{ckpt}/metrics.jsonl") if '"loss"' in l]
steps = [b - a for a, b in zip(times, times[1:])][skip:]
workers = json.load(open(f"{ckpt}/coordinator.json"))["workers"]
fast = sum(w["shards"] for w in workers if w["name"].startswith("fast"))
print(f"{statistics.median(steps):.3f} {fast} {sum(w['shards'] for w in workers)}")
PY
}

echo "charrnn hetero: H $units, E $embed, batch $batch, --shards $shards, $steps steps (median after $skip), $([ $tree = 1 ] && echo "tree" || echo "results one by one"), $(nproc) CPUs"
echo "| round | T1 s/step | Th s/step | ideal | both | both / ideal | fast worker's shards (by speed) |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for r in $(seq 1 "$rounds"); do
    run "r$r-fast" fast > "$work/result"; read -r t1 _ _ < "$work/result"
    run "r$r-slow" slow > "$work/result"; read -r th _ _ < "$work/result"
    run "r$r-both" fast slow > "$work/result"; read -r both fast total < "$work/result"
    python3 - "$r" "$t1" "$th" "$both" "$fast" "$total" <<'PY'
import sys
r, t1, th, both, fast, total = sys.argv[1], *map(float, sys.argv[2:5]), int(sys.argv[5]), int(sys.argv[6])
ideal = 1 / (1 / t1 + 1 / th)
print(f"| {r} | {t1:.3f} | {th:.3f} | {ideal:.3f} | {both:.3f} | {both / ideal:.2f} | {fast} of {total} ({total * ideal / t1:.0f}) |")
PY
done
