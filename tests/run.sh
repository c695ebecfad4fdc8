#!/usr/bin/env bash
# Runs every cmocka test binary of a build folder, then the browser tests
# (tests/browser/run.mjs, which prints cmocka's summary lines), and sums
# their results. The last line is "N passed, N failed"; the exit status is
# non-zero when anything failed. A binary that dies without a cmocka
# summary counts as one failure. SKIP_TESTS (names of test binaries,
# separated by spaces; test_browser for the browser tests) leaves those out.
set -u
build=${1:-build}
export BLINDSPOT_BUILD=$build
passed=0
failed=0

# run NAME COMMAND...: runs one test program and adds up its summary.
run() {
    local name=$1
    shift
    if [[ " ${SKIP_TESTS:-} " == *" $name "* ]]; then
        echo "== $name: skipped (SKIP_TESTS)"
        return
    fi
    echo "== $name"
    local out rc p f
    out=$("$@" 2>&1)
    rc=$?
    printf '%s\n' "$out"
    p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
    f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "$name: exited with status $rc without a cmocka summary"
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
}

for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    run "$(basename "$t")" "$t"
done
run test_browser node tests/browser/run.mjs "$build"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
