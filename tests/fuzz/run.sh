#!/usr/bin/env bash
# Runs libFuzzer targets, each for FUZZ_SECONDS, and sums up: one line per
# target with its executions per second and the coverage it reached, then
# "N targets, N failed". A target fails on a crash, a sanitizer report, a
# leak, one input taking over 10 seconds or one allocation over 256 MB (no
# input here justifies one); the input is then in DIR/crashes/ and the
# last lines of the log are shown.
#
#   tests/fuzz/run.sh [-j N] DIR NAME...   (DIR/fuzz_NAME, built by `make fuzz-build`)
#
# Each target runs in one process (one core); -j N runs N targets at a
# time (default 1), and the summary lines keep the order of the names.
# A target starts from the committed seeds tests/fuzz/corpus/NAME/ (only
# read) and DIR/corpus/NAME/, where what it finds is kept for the next
# run; tests/fuzz/NAME.dict is its dictionary.
set -u
jobs=1
if [ "${1:-}" = -j ]; then
    jobs=$2
    shift 2
fi
dir=$1
shift
seconds=${FUZZ_SECONDS:-60}
seeds=$(dirname "$0")
mkdir -p "$dir/crashes" "$dir/logs"

# fuzz_one NAME: runs one target; its summary goes to DIR/logs/NAME.sum,
# and the file DIR/logs/NAME.failed exists when it failed.
fuzz_one() {
    local name=$1 log=$dir/logs/$1.log sum=$dir/logs/$1.sum dict=() rc runs speed cov
    mkdir -p "$dir/corpus/$name"
    rm -f "$dir/logs/$name.failed"
    [ -f "$seeds/$name.dict" ] && dict=("-dict=$seeds/$name.dict")
    "$dir/fuzz_$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=256 \
        -print_final_stats=1 -artifact_prefix="$dir/crashes/$name-" "${dict[@]}" \
        "$dir/corpus/$name" "$seeds/corpus/$name" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1)
    if [ "$rc" -ne 0 ]; then
        touch "$dir/logs/$name.failed"
        {
            echo "fuzz_$name: FAILED (exit $rc); log $log"
            grep -E '^(==|SUMMARY|.*runtime error|.*Assertion|.*promise)' "$log" | head -20
            tail -5 "$log"
        } >"$sum"
    else
        echo "fuzz_$name: ${runs:-?} runs in ${seconds}s, ${speed:-?} exec/s, ${cov:-cov ?}" >"$sum"
    fi
}

for name in "$@"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
        wait -n
    done
    fuzz_one "$name" &
done
wait
failed=0
for name in "$@"; do
    cat "$dir/logs/$name.sum"
    [ -e "$dir/logs/$name.failed" ] && failed=$((failed + 1))
done
echo "$# targets, $failed failed"
[ "$failed" -eq 0 ]
