#!/usr/bin/env bash
# Scaling on emulated hosts: N+1 network namespaces on one Linux machine, joined by a bridge, each with a veth
# link optionally rate-limited (tc tbf, both directions). A coordinator runs on host 0 and one
# `charrnn worker --threads 1` on each other host. Per link rate and worker count it measures, with the
# model's full parameter size but negligible compute (--rows rows per worker, --seq characters):
#   - ms per step in steady state, from the wall times in the coordinator's metrics.csv (warm-up skipped);
#   - bytes through the coordinator's link per step, each direction, from its veth's kernel counters, and the most
#     any one worker's link carried, each direction (where the reduction's fan-in shows);
#   - the coordinator's peak RSS (/usr/bin/time -v, else VmHWM polled from /proc);
#   - workers lost (coordinator.json);
#   - CPU per step in steady state (utime + stime from /proc), the coordinator's and the workers' summed: on one
#     machine all processes share its cores, so ms/step cannot fall below (their sum) / cores.
# Then it times one --compute-rows-row shard on one thread (`charrnn bench train`) and projects weak-scaling
# efficiency: step(N) = compute + comm(N), comm(N) = a + b·N fitted by least squares on the measured points.
#
# Needs root, iproute2 (ip, tc with tbf) and nsenter. Everything it makes (namespaces, bridge, veths, processes,
# a work directory) carries the prefix scl<pid> and is removed on every exit path. Prints Markdown.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: Deploy/scale/scale.sh [options]
  --charrnn PATH         charrnn executable (default: .build/release/charrnn, else charrnn on PATH)
  --workers "LIST"       worker counts N (default: "1 2 4 8 16")
  --rates "LIST"         tc rates per host link, e.g. 1gbit 10gbit 500mbit, or none (default: "1gbit 10gbit")
  --steps K              steps per configuration (default: 8)
  --warmup W             steps not timed, W < K (default: 2)
  --embed E --units U    model size (default: 256, 1024: the tutorial's)
  --rows R --seq S       rows per worker and characters per row (default: 8, 2): --batch R·N --shards K·N
  --shards-per-worker K  shards per worker, pulled one by one (default: 1); K must divide R
  --data FILE            training text (default: ../shared/data/tinyshakespeare.txt if present, else a
                         generated text of 65 symbols, Tiny Shakespeare's alphabet size)
  --timeout SECONDS      per configuration; the coordinator is stopped after it (default: 180)
  --deadline SECONDS     the coordinator's --deadline (default: 30, charrnn's default)
  --coordinator-threads T  the coordinator's --threads (default: 1)
  --compute-rows R --compute-seq S  the compute shard timed with bench train (default: 64, 100)
  --no-compute           skip the compute measurement and the projection
  --insecure             plain TCP (default: CURVE keys from charrnn keygen, as a real cluster runs)
  --relay-fanout F       workers relay the weights (worker --relay on each host's address) down a tree of
                         fan-out F (coordinator --relay-fanout F), over CURVE like the rest unless --insecure
                         (default: 0, every worker gets the weights from the coordinator)
  --logs DIR             keep every process's output and run directory in DIR (default: removed)
EOF
}

die() { echo "scale.sh: $*" >&2; exit 2; }

root=$(cd "$(dirname "$0")/../.." && pwd)
charrnn=""
workers_list="1 2 4 8 16"
rates_list="1gbit 10gbit"
steps=8 warmup=2 embed=256 units=1024 rows=8 seq=2 data="" timeout=180 deadline=30 cthreads=1
compute_rows=64 compute_seq=100 compute=1 insecure=0 logs="" fanout=0 per_worker=1
while [ $# -gt 0 ]; do
    case "$1" in
        --no-compute) compute=0; shift; continue ;;
        --insecure) insecure=1; shift; continue ;;
        -h|--help) usage; exit 0 ;;
    esac
    [ $# -ge 2 ] || die "$1 needs a value, or is not an option (see --help)"
    case "$1" in
        --charrnn) charrnn=$2 ;;
        --workers) workers_list=$2 ;;
        --rates) rates_list=$2 ;;
        --steps) steps=$2 ;;
        --warmup) warmup=$2 ;;
        --embed) embed=$2 ;;
        --units) units=$2 ;;
        --rows) rows=$2 ;;
        --shards-per-worker) per_worker=$2 ;;
        --seq) seq=$2 ;;
        --data) data=$2 ;;
        --timeout) timeout=$2 ;;
        --deadline) deadline=$2 ;;
        --coordinator-threads) cthreads=$2 ;;
        --compute-rows) compute_rows=$2 ;;
        --compute-seq) compute_seq=$2 ;;
        --logs) logs=$2 ;;
        --relay-fanout) fanout=$2 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift 2
done

for v in steps warmup embed units rows per_worker seq timeout deadline cthreads compute_rows compute_seq; do
    name=${v/cthreads/coordinator-threads}
    name=${name/per_worker/shards-per-worker}
    [[ ${!v} =~ ^[0-9]+$ ]] || die "--${name//_/-} must be a whole number, got '${!v}'"
    [ "$v" = warmup ] || [ "${!v}" -gt 0 ] || die "--${name//_/-} must be positive"
done
[ $((rows % per_worker)) -eq 0 ] || die "--shards-per-worker ($per_worker) must divide --rows ($rows)"
[ "$warmup" -lt "$steps" ] || die "--warmup ($warmup) must be less than --steps ($steps)"
[[ $fanout =~ ^[0-9]+$ ]] && [ "$fanout" -le 64 ] || die "--relay-fanout must be a whole number from 0 to 64, got '$fanout'"
[ -n "${workers_list// /}" ] || die "--workers is empty"
for n in $workers_list; do [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 250 ] || die "worker counts are 1 to 250, got '$n'"; done
[ -n "${rates_list// /}" ] || die "--rates is empty"
for r in $rates_list; do [[ $r =~ ^(none|[0-9]+[kmgt]?bit)$ ]] || die "rates are like 1gbit, 100mbit or none, got '$r'"; done

# Bits per second of a tc rate; 0 for none (no limit).
rate_bps() {
    case "$1" in
        none) echo 0 ;;
        *tbit) echo $(( ${1%tbit} * 1000000000000 )) ;;
        *gbit) echo $(( ${1%gbit} * 1000000000 )) ;;
        *mbit) echo $(( ${1%mbit} * 1000000 )) ;;
        *kbit) echo $(( ${1%kbit} * 1000 )) ;;
        *) echo $(( ${1%bit} )) ;;
    esac
}

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
for tool in ip tc nsenter awk; do command -v "$tool" >/dev/null || die "$tool is not installed (iproute2, util-linux)"; done
if [ -z "$charrnn" ]; then
    if [ -x "$root/.build/release/charrnn" ]; then charrnn=$root/.build/release/charrnn
    else charrnn=$(command -v charrnn) || die "no charrnn: build with swift build -c release, or give --charrnn"; fi
fi
[ -f "$charrnn" ] && [ -x "$charrnn" ] || die "$charrnn is not an executable"
charrnn=$(cd "$(dirname "$charrnn")" && pwd)/$(basename "$charrnn")
if [ -z "$data" ] && [ -f "$root/../shared/data/tinyshakespeare.txt" ]; then data=$root/../shared/data/tinyshakespeare.txt; fi
[ -z "$data" ] || [ -f "$data" ] || die "no such file: $data"

# --- from here on, cleanup removes what is made -----------------------------------------------------------
prefix=scl$$
max_n=0
for n in $workers_list; do [ "$n" -gt "$max_n" ] && max_n=$n; done
hosts=$((max_n + 1))
# A /24 for the hosts. The bridge has no address, so the subnet exists only inside our namespaces.
subnet="10.$((200 + $$ % 50)).$(( ($$ / 50) % 256 ))"
address() { echo "$subnet.$(($1 + 1))"; }
work=$(mktemp -d "/tmp/$prefix.XXXXXX")
measuring=""

cleanup() {
    local status=$?
    trap - EXIT INT TERM HUP
    if [ -n "$measuring" ]; then kill -KILL "$measuring" 2>/dev/null || true; fi
    # Every process still in one of our namespaces is one we started.
    for ((h = 0; h < hosts; h++)); do
        for p in $(ip netns pids "$prefix-h$h" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    done
    for ((h = 0; h < hosts; h++)); do
        ip link del "$prefix-v$h" 2>/dev/null || true
        ip netns del "$prefix-h$h" 2>/dev/null || true
    done
    ip link del "$prefix-br" 2>/dev/null || true
    if [ -n "$logs" ]; then mkdir -p "$logs" && cp -r "$work"/. "$logs"/ 2>/dev/null || true; fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

ip link add "$prefix-br" type bridge
ip link set "$prefix-br" up
for ((h = 0; h < hosts; h++)); do
    ns=$prefix-h$h
    ip netns add "$ns"
    ip link add "$prefix-v$h" type veth peer name eth0 netns "$ns"
    ip link set "$prefix-v$h" master "$prefix-br"
    ip link set "$prefix-v$h" up
    ip -n "$ns" addr add "$(address "$h")/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
done

# tbf on both ends of every host's veth: the bridge side shapes what enters the host, eth0 what leaves it.
# Burst: 1 ms at the rate, at least 64 KB, so the shaper is smooth without being starved by timer slack.
set_rate() {
    local bps burst h
    bps=$(rate_bps "$1")
    for ((h = 0; h < hosts; h++)); do
        tc qdisc del dev "$prefix-v$h" root 2>/dev/null || true
        ip netns exec "$prefix-h$h" tc qdisc del dev eth0 root 2>/dev/null || true
        if [ "$bps" -gt 0 ]; then
            burst=$(( bps / 8 / 1000 )); [ "$burst" -ge 65536 ] || burst=65536
            tc qdisc add dev "$prefix-v$h" root tbf rate "$1" burst "$burst" latency 100ms
            ip netns exec "$prefix-h$h" tc qdisc add dev eth0 root tbf rate "$1" burst "$burst" latency 100ms
        fi
    done
}

data_name=$( [ -n "$data" ] && basename "$data" || echo "generated text of 65 symbols")
if [ -z "$data" ]; then
    data=$work/text.txt
    awk 'BEGIN { srand(1); s = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz .,;:!?-&$3@"
                 for (i = 0; i < 400000; i++) { r = int(rand() * 65); printf "%s", (r == 64 ? "\n" : substr(s, r + 1, 1)) } }' > "$data"
fi

security_coordinator=() security_worker=()
if [ "$insecure" -eq 1 ]; then
    security_coordinator=(--insecure)
    security="plain TCP (--insecure)"
else
    "$charrnn" keygen --output "$work/coordinator" >/dev/null
    "$charrnn" keygen --output "$work/worker" >/dev/null
    security_coordinator=(--secret-key "$work/coordinator.key" --authorized-keys "$work/worker.pub")
    security_worker=(--secret-key "$work/worker.key" --coordinator-key "$work/coordinator.pub")
    security="CURVE keys (charrnn keygen; the workers share one pair), as on a real cluster"
fi

# The bridge side of host 0's veth: what it receives the coordinator sent (out), what it transmits the
# coordinator receives (in).
counter() { cat "/sys/class/net/$prefix-v${2:-0}/statistics/$1"; }
# Every worker host's counter, space-separated, hosts 1..N.
worker_counters() { local h; for ((h = 1; h <= $2; h++)); do printf '%s ' "$(counter "$1" "$h")"; done; }
# The largest per-host difference of two worker_counters lists, in MB per step.
busiest() { awk -v a="$1" -v b="$2" -v s="$3" 'BEGIN { n = split(a, x, " "); split(b, y, " "); m = 0
    for (i = 1; i <= n; i++) if (y[i] - x[i] > m) m = y[i] - x[i]
    printf "%.3f", m / s / 1e6 }'; }
# utime + stime of processes, in clock ticks (0 for one that is gone).
cpu_ticks() { local p t=0; for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$t"; }
json_field() { sed -n "s/.*\"$2\" *: *\([0-9][0-9]*\).*/\1/p" "$1" 2>/dev/null | head -1; }

# One configuration (rate, N): prints one table row.
measure() {
    local rate=$1 n=$2 bps dir ckpt cpid tpid start stop_at=0 rx0 tx0 rx1 tx1 hwm=0 v rc status=ok h p
    local seen s0=-1 s1=-1 c0 w0 c1 w1 cpu_c=- cpu_w=- bound=-
    bps=$(rate_bps "$rate")
    dir=$work/$rate-n$n
    ckpt=$dir/ckpt
    mkdir -p "$dir"
    local -a wpids=()
    local -a cmd=(nsenter "--net=/run/netns/$prefix-h0" "$charrnn" coordinator --bind "tcp://$(address 0):5555"
        --data "$data" --embed "$embed" --units "$units" --batch $((rows * n)) --shards $((per_worker * n)) --seq "$seq"
        --steps "$steps" --min-workers "$n" --deadline "$deadline" --threads "$cthreads" --relay-fanout "$fanout"
        --checkpoint-dir "$ckpt" "${security_coordinator[@]}")
    rx0=$(counter rx_bytes) tx0=$(counter tx_bytes)
    local wrx0 wtx0 wrx1 wtx1
    wrx0=$(worker_counters rx_bytes "$n") wtx0=$(worker_counters tx_bytes "$n")
    # nsenter execs charrnn in place; /usr/bin/time, when there, is its parent and reports the peak RSS.
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -v -o "$dir/time.txt" "${cmd[@]}" >"$dir/coordinator.log" 2>&1 &
        tpid=$! cpid=""
        for _ in $(seq 200); do
            cpid=$(awk '{ print $1 }' "/proc/$tpid/task/$tpid/children" 2>/dev/null || true)
            [ -n "$cpid" ] && break
            sleep 0.01
        done
        [ -n "$cpid" ] || cpid=$tpid
    else
        "${cmd[@]}" >"$dir/coordinator.log" 2>&1 &
        tpid=$! cpid=$!
    fi
    for ((h = 1; h <= n; h++)); do
        local -a relay=()
        [ "$fanout" -eq 0 ] || relay=(--relay "tcp://$(address "$h"):*")
        nsenter "--net=/run/netns/$prefix-h$h" "$charrnn" worker --connect "tcp://$(address 0):5555" --threads 1 \
            --name "h$h" "${security_worker[@]}" "${relay[@]}" >"$dir/worker$h.log" 2>&1 &
        wpids+=($!)
    done
    start=$SECONDS
    while kill -0 "$tpid" 2>/dev/null; do
        v=$(awk '/^VmHWM/ { print $2 }' "/proc/$cpid/status" 2>/dev/null || true)
        if [ -n "$v" ] && [ "$v" -gt "$hwm" ]; then hwm=$v; fi
        # CPU counters at the first poll past the warm-up and at the last one before the final step (whose end
        # is followed by the checkpoint's write, not a step's work).
        seen=$(( $(wc -l 2>/dev/null < "$ckpt/metrics.csv" || echo 1) - 1 ))
        if [ "$seen" -ge "$warmup" ] && [ "$seen" -lt "$steps" ] && { [ "$s0" -lt 0 ] || [ "$seen" -gt "$s1" ]; }; then
            v=$(cpu_ticks "$cpid"); w1=$(cpu_ticks "${wpids[@]}")
            if [ "$s0" -lt 0 ]; then s0=$seen c0=$v w0=$w1; fi
            s1=$seen c1=$v
        fi
        if [ "$status" = ok ] && [ $((SECONDS - start)) -ge "$timeout" ]; then
            status="timeout ${timeout}s"
            kill -TERM "$cpid" 2>/dev/null || true
            stop_at=$SECONDS
        fi
        if [ "$status" != ok ] && [ $((SECONDS - stop_at)) -ge 15 ]; then kill -KILL "$cpid" 2>/dev/null || true; fi
        sleep 0.1
    done
    rc=0
    wait "$tpid" 2>/dev/null || rc=$?
    if [ "$status" = ok ] && [ "$rc" -ne 0 ]; then status="exit $rc"; fi
    # Workers leave when the coordinator shuts them down; give them a moment, then stop them.
    for _ in $(seq 100); do
        local alive=0
        for p in "${wpids[@]}"; do if kill -0 "$p" 2>/dev/null; then alive=1; fi; done
        [ "$alive" -eq 0 ] && break
        sleep 0.1
    done
    for p in "${wpids[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rx1=$(counter rx_bytes) tx1=$(counter tx_bytes)
    wrx1=$(worker_counters rx_bytes "$n") wtx1=$(worker_counters tx_bytes "$n")
    if [ -f "$dir/time.txt" ]; then
        v=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$dir/time.txt")
        if [ -n "$v" ]; then hwm=$v; fi
    fi
    local done_steps lost ms out=- in=- link=- worker_io="- / -"
    if [ "$s1" -gt "$s0" ]; then
        read -r cpu_c cpu_w bound < <(awk -v c=$((c1 - c0)) -v w=$((w1 - w0)) -v s=$((s1 - s0)) -v hz="$(getconf CLK_TCK)" \
            -v cores="$(nproc)" 'BEGIN { c = c * 1000 / hz / s; w = w * 1000 / hz / s; printf "%.0f %.0f %.0f\n", c, w, (c + w) / cores }')
    fi
    done_steps=$(json_field "$ckpt/coordinator.json" step)
    lost=$(json_field "$ckpt/coordinator.json" lostWorkers)
    # Steady state: from the end of step W to the end of the last step recorded.
    ms=$(awk -F, -v w="$warmup" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "wall_time") c = i; next }
        $1 == w { t0 = $c } $1 > w { t1 = $c; s = $1 }
        END { if (t0 != "" && s > w) printf "%.1f", (t1 - t0) * 1000 / (s - w); else print "-" }' "$ckpt/metrics.csv" 2>/dev/null || echo -)
    # Bytes: the whole run (joins, pings and shutdown included, all small) over its steps.
    if [ "${done_steps:-0}" -gt 0 ]; then
        out=$(awk -v b=$((rx1 - rx0)) -v s="$done_steps" 'BEGIN { printf "%.3f", b / s / 1e6 }')
        in=$(awk -v b=$((tx1 - tx0)) -v s="$done_steps" 'BEGIN { printf "%.3f", b / s / 1e6 }')
        # A worker host's bridge-side veth transmits what the host receives, and receives what it sends.
        worker_io="$(busiest "$wtx0" "$wtx1" "$done_steps") / $(busiest "$wrx0" "$wrx1" "$done_steps")"
        if [ "$bps" -gt 0 ]; then link=$(awk -v o="$out" -v i="$in" -v r="$bps" 'BEGIN { printf "%.0f / %.0f", o * 8e9 / r, i * 8e9 / r }'); fi
    fi
    printf '| %s | %d | %s | %s | %s | %s | %s | %s | %s / %s | %s | %.0f | %s | %s | %s |\n' "$rate" "$n" "$ms" "${done_steps:-0}" "$out" \
        "$in" "$link" "$worker_io" "$cpu_c" "$cpu_w" "$bound" "$(awk -v k="$hwm" 'BEGIN { print k / 1024 }')" "${lost:--}" \
        "$(cut -d' ' -f1-3 /proc/loadavg)" "$status"
}

echo "# charrnn on emulated hosts"
echo
echo "- $(date -u '+%Y-%m-%d %H:%M UTC'); CPU: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) cores; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- charrnn: $charrnn; security: $security; weights: $([ "$fanout" -eq 0 ] && echo "from the coordinator to every worker" || echo "down a relay tree of fan-out $fanout")"
echo "- hosts: network namespaces $prefix-h0..h$max_n on bridge $prefix-br, $subnet.0/24; tc tbf on both directions of each host's veth"
echo "- workload: embed $embed, units $units, $data_name; --batch $rows·N --shards $per_worker·N --seq $seq; $steps steps, the first $warmup not timed"
echo "- coordinator on host 0 (--threads $cthreads, --deadline $deadline), one \`worker --threads 1\` on each of hosts 1..N; timeout ${timeout}s per configuration"
echo
echo "ms/step: steady state, from the wall times in the coordinator's metrics.csv. out / in: bytes through the"
echo "coordinator's link per step (its veth's counters over the run / steps), MB = 10^6 bytes. link ms: those bytes"
echo "at the link's rate, each direction. busiest worker: the most one worker host's link carried per step, MB in /"
echo "out (with the relay tree, the holder of shard 0 takes a sum from each level of the reduction tree below it)."
echo "CPU ms/step: in steady state, the coordinator's / all workers' together;"
echo "bound: their sum over this machine's $(nproc) cores, below which ms/step cannot fall here (separate hosts would"
echo "run the workers' CPU side by side). RSS: the coordinator's peak. load: load average (1/5/15 min) at the end."
echo
echo "| rate | N | ms/step | steps | out MB/step | in MB/step | link ms out / in | busiest worker MB in / out | CPU ms/step coord / workers | bound ms | peak RSS MB | lost workers | load | status |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
results=()
for rate in $rates_list; do
    set_rate "$rate"
    for n in $workers_list; do
        # In the background: bash runs a trap only between commands, and `wait` is one a signal interrupts.
        measure "$rate" "$n" >"$work/row" &
        measuring=$!
        wait "$measuring"
        measuring=""
        row=$(cat "$work/row")
        echo "$row"
        results+=("$row")
    done
done

[ "$compute" -eq 1 ] || exit 0
bench_cmd=(bench train --batch "$compute_rows" --seq "$compute_seq" --embed "$embed" --units "$units" --threads 1
    --steps 3 --warmup 1 --profile-steps 0)
bench=$("$charrnn" "${bench_cmd[@]}")
compute_ms=$(echo "$bench" | awk -F'|' '/ms\/step \(median/ { gsub(/ /, "", $3); print $3 }')
[ -n "$compute_ms" ] || die "could not read ms/step from charrnn bench train"
core=$(echo "$bench" | awk -F"|" '/OpenBLAS core/ { gsub(/ /, "", $3); print $3 }')
echo
echo "Compute of one $compute_rows-row shard (seq $compute_seq, 1 thread, OpenBLAS core ${core:-?}; a whole in-process step, Adam included):"
echo "\`charrnn ${bench_cmd[*]}\`: **$compute_ms ms/step** (median of 3), load $(cut -d' ' -f1-3 /proc/loadavg)."
echo
# One projection row per rate: comm(N) = a + b·N fitted by least squares on the usable measured rows (not timed
# out, no lost worker). With separate=1, each row's ms/step first loses the CPU that the other workers' processes
# took on this machine's shared cores; rows without a CPU measurement are left out.
project() {
    local separate=$1 rate
    for rate in $rates_list; do
        printf '%s\n' "${results[@]}" | awk -F'|' -v rate="$rate" -v c="$compute_ms" -v separate="$separate" -v cores="$(nproc)" \
            -v bps="$(rate_bps "$rate")" '
            { for (i = 2; i <= NF; i++) gsub(/^ +| +$/, "", $i) }
            $2 == rate && $4 != "-" && $15 == "ok" && $13 == "0" {
                y0 = $4
                if (separate) {
                    if (split($10, cpu, " / ") != 2 || cpu[2] == "-") next
                    y0 -= (cpu[2] - cpu[2] / $3) / cores
                    # Never below the links floor: the most one host link carried per step (the coordinator, each
                    # way; the busiest worker, each way), at the rate.
                    if (bps > 0) {
                        floor = 0
                        if (split($8, l, " / ") == 2) { floor = l[1] > l[2] ? l[1] : l[2] }
                        if (split($9, bw, " / ") == 2) for (k = 1; k <= 2; k++) if (bw[k] * 8e9 / bps > floor) floor = bw[k] * 8e9 / bps
                        if (y0 < floor) y0 = floor
                    }
                }
                n++; x[n] = $3; y[n] = y0
            }
            END {
                if (n == 0) { printf "| %s | - | - | 0 | no usable rows | | | | | | |\n", rate; exit }
                sx = sy = sxx = sxy = 0
                for (i = 1; i <= n; i++) { sx += x[i]; sy += y[i]; sxx += x[i] * x[i]; sxy += x[i] * y[i] }
                d = n * sxx - sx * sx
                if (d == 0) { b = 0; a = sy / n } else { b = (n * sxy - sx * sy) / d; a = (sy - b * sx) / n }
                printf "| %s | %.0f | %.1f | %d |", rate, a, b, n
                split("1 2 4 8 16 32 64", ns, " ")
                for (k = 1; k <= 7; k++) printf " %.0f %% |", 100 * (c + a + b) / (c + a + b * ns[k])
                printf "\n"
            }'
    done
}

echo "Projected weak scaling, $compute_rows rows per worker: step(N) = compute + comm(N), with comm(N) = a + b·N fitted"
echo "by least squares on the measured ms/step above (rows that timed out or lost workers left out: their time is"
echo "the deadline's, not the link's); efficiency(N) = step(1) / step(N)."
echo
echo "On this machine, comm(N) as measured:"
echo
echo "| rate | a ms | b ms/worker | points | N=1 | 2 | 4 | 8 | 16 | 32 | 64 |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
project 0
echo
echo "Separate hosts, estimated: here the N workers' CPU shares $(nproc) cores, on separate hosts each has its own. Each"
echo "measured ms/step less (workers' CPU − one worker's share) / $(nproc), i.e. as if the other N − 1 workers' work had"
echo "not delayed the step at all (an estimate: it assumes this machine's cores were busy with it, which the bound"
echo "column shows, and it keeps one worker's CPU and the whole tree's latency on the path), and never below the"
echo "links' floor: the most bytes one host's link carried in a step (the coordinator's or the busiest worker's, each"
echo "way), at the rate:"
echo
echo "| rate | a ms | b ms/worker | points | N=1 | 2 | 4 | 8 | 16 | 32 | 64 |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
project 1
