#!/usr/bin/env bash
# Times `rollover simulate TOPOLOGY` for two rollover binaries, alternating them in one
# run so both see the same machine, and prints each run, the medians and their ratio.
#
#   bench/compare-simulate.sh OLD_BINARY NEW_BINARY [--runs N] [--slow-disk] [TOPOLOGY]
#
# --slow-disk runs both under bench/slow-disk.c (LD_PRELOAD): every fsync/fdatasync
# waits for one emulated disk that completes one sync at a time in 3.5 ms
# (SLOWSYNC_US to change it), the latency the scale issue measured on these machines'
# disks. Build an old binary with e.g.
#   git worktree add /tmp/old 5ffa661 && (cd /tmp/old && cargo build --release -p rollover-cli)
set -euo pipefail

usage() { sed -n '2,11p' "$0" >&2; exit 2; }
[ $# -ge 2 ] || usage
old=$1 new=$2; shift 2
runs=3 slow= topology=examples/plant-300.yaml
while [ $# -gt 0 ]; do
    case $1 in
        --runs) [ $# -ge 2 ] || usage; runs=$2; shift 2 ;;
        --slow-disk) slow=1; shift ;;
        -h|--help) usage ;;
        *) topology=$1; shift ;;
    esac
done
for bin in "$old" "$new"; do [ -x "$bin" ] || { echo "not an executable: $bin" >&2; exit 2; }; done

here=$(cd "$(dirname "$0")" && pwd)
preload=
if [ -n "$slow" ]; then
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    preload=$build/slow-disk.so
    gcc -O2 -shared -fPIC -o "$preload" "$here/slow-disk.c" -ldl -lpthread
    echo "slow disk: one sync at a time, ${SLOWSYNC_US:-3500} us each"
fi

time_one() {  # prints wall seconds of one simulate run; fails if the run did not PASS
    local bin=$1 out start end
    out=$(mktemp)
    start=$(date +%s.%N)
    LD_PRELOAD=$preload "$bin" simulate "$topology" >"$out" 2>&1 || { cat "$out" >&2; return 1; }
    end=$(date +%s.%N)
    grep -q '^PASS' "$out" || { cat "$out" >&2; return 1; }
    rm -f "$out"
    echo "$end - $start" | bc
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -a old_times new_times
for i in $(seq 1 "$runs"); do
    o=$(time_one "$old"); n=$(time_one "$new")
    old_times+=("$o"); new_times+=("$n")
    printf 'run %d: old %.2f s, new %.2f s\n' "$i" "$o" "$n"
done
om=$(printf '%s\n' "${old_times[@]}" | median)
nm=$(printf '%s\n' "${new_times[@]}" | median)
printf 'median: old %.2f s, new %.2f s, old/new = %.2f (above 1: new is faster; %s, %d runs each)\n' \
    "$om" "$nm" "$(echo "$om / $nm" | bc -l)" "$topology" "$runs"
