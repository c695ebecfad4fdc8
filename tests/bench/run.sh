#!/usr/bin/env bash
# make bench: blindspot's L-BFGS attack timed side by side with the peer (the
# same attack in PyTorch + SciPy, tests/bench/peer.py) and beside the search
# main did before warm starts, then blindspot over HTTP (with the daemon's
# attack throughput at 32 clients before and after batching across
# requests), then an imported ONNX model: the attack beside the peer and the
# forward pass beside ONNX Runtime (tests/bench/ort_bench.mjs). Every
# measurement is one command whose JSON output lands in build/bench/NAME.json
# (the command beside it in build/bench/commands.tsv); tests/bench/report.py
# prints the figures with the peer beside ours and writes docs/benchmarks.md.
# Benchmarks print: nothing here fails on timing. The run fails only when
# something does not work: a missing tool, a model whose predictions differ
# from the peer's (or ONNX Runtime's), a daemon that does not start.
#
# Expects `make build models onnx-fixtures ort` (build/libblindspot.a,
# models/, data/mnist, build/onnx-fixtures, onnxruntime-node).
# Sizes: BENCH_N (MLP images, default 100), BENCH_N_CNN (default 30),
# BENCH_N_K9 and BENCH_N_K9_CNN (images attacked towards all 9 other labels
# in one call, default 12 and 3), BENCH_N_ONNX (images of the ONNX model
# attacked, default 10), BENCH_N_HTTP (images cycled through by the daemon
# throughput runs, default 100), BENCH_WRK_SECONDS (each such run, default 10).
# BENCH_ONLY=onnx measures the ONNX model alone: the other measurements of
# the last full run stay in build/bench and the report is written from all.
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT=build/bench
PY=/usr/bin/python3 # Debian's: python3-torch is not visible to a pyenv python3
N=${BENCH_N:-100}
N_CNN=${BENCH_N_CNN:-30}
N_K9=${BENCH_N_K9:-12}         # images attacked towards all 9 other labels
N_K9_CNN=${BENCH_N_K9_CNN:-3}
MODELS="fc10-1e-4 fc100-100-10 fc200-200-10 ae400-10 cnn"
ONNX_MODEL=build/onnx-fixtures/resnet.onnx # a small ResNet on 3x32x32
N_ONNX=${BENCH_N_ONNX:-10}
N_HTTP=${BENCH_N_HTTP:-100}
WRK_SECONDS=${BENCH_WRK_SECONDS:-10}
ONNX_IMAGES=64 # seeded images: the inference check's, the attack takes the first N_ONNX
ONLY=${BENCH_ONLY:-}
# the peer and PyTorch get one thread, as every blindspot worker has
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in tests/bench

say() { printf 'bench: %s\n' "$*" >&2; }
. tests/daemon_port.sh
case "$ONLY" in "" | onnx) ;; *) say "BENCH_ONLY is onnx or unset, not $ONLY"; exit 2 ;; esac

# --- what the benchmark needs ------------------------------------------------
need=""
for p in python3-torch python3-scipy python3-numpy wrk linux-perf; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need="$need $p"
done
if [ -n "$need" ]; then
    say "installing$need"
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $need
fi
$PY -c 'import torch, scipy, numpy' || { say "$PY cannot import torch, scipy and numpy"; exit 1; }
for m in $MODELS; do
    [ -f "models/$m.safetensors" ] || { say "models/$m.safetensors is missing: run make models first"; exit 1; }
done
[ -f "$ONNX_MODEL" ] || { say "$ONNX_MODEL is missing: run make onnx-fixtures"; exit 1; }
[ -f build/npm-tools/node_modules/onnxruntime-node/package.json ] ||
    { say "onnxruntime-node is missing: run make ort"; exit 1; }

if [ "$ONLY" = onnx ]; then
    [ -f "$OUT/machine.tsv" ] || { say "BENCH_ONLY=onnx keeps a full run's figures: run make bench first"; exit 1; }
    rm -f "$OUT"/onnx-* "$OUT"/team-*
    sed -i '/^onnx-/d; /^team-/d' "$OUT/commands.tsv"
else
    rm -rf "$OUT" && mkdir -p "$OUT"
fi
# built by `make bench` with the flags of every other binary
CORE=build/tools/bench_core
[ -x "$CORE" ] || { say "$CORE is missing: run make bench"; exit 1; }
PEER="$PY tests/bench/peer.py"

# measure NAME COMMAND...: runs COMMAND, its stdout to $OUT/NAME.json
measure() {
    local name=$1; shift
    say "$name: $*"
    printf '%s\t%s\n' "$name" "$*" >> "$OUT/commands.tsv"
    "$@" > "$OUT/$name.json"
}

# --- the imported model (ONNX) -----------------------------------------------------
# The peer rebuilds the module tests/oracle/onnx_models.py exported with the
# file's weights; the images are seeded colour patterns on the 8-bit grid
# (there is no colour dataset), image i attacked towards the model's
# answer + 1. report.py fails the run when blindspot's predictions differ
# from the peer's or from ONNX Runtime's.
bench_onnx() {
    local images=$OUT/onnx-images.f32
    printf 'date\t%s\nload_start\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" \
        "$(cut -d' ' -f1-3 /proc/loadavg)" > "$OUT/onnx-machine.tsv"
    measure onnx-images $PEER images "$ONNX_MODEL" "$ONNX_IMAGES" "$images"
    printf 'onnx-labels\t%s\n' "$CORE predict $ONNX_MODEL $images" >> "$OUT/commands.tsv"
    $CORE predict "$ONNX_MODEL" "$images" > "$OUT/onnx-labels.txt"
    measure onnx-predict $PEER predict "$ONNX_MODEL" "$images" "$OUT/onnx-labels.txt" ||
        say "MISMATCH: the peer's predictions differ from ours on $ONNX_MODEL (see $OUT/onnx-predict.json)"
    measure onnx-peer $PEER attack "$ONNX_MODEL" "$images" "$N_ONNX"
    measure onnx-core $CORE attack "$ONNX_MODEL" "$images" "$N_ONNX"
    local shape
    shape=$($PY -c 'import json, sys; print(*json.load(open(sys.argv[1]))["shape"])' "$OUT/onnx-images.json")
    for b in 1 32; do
        measure "onnx-infer-b$b" $CORE infer "$ONNX_MODEL" "$images" "$b"
        measure "onnx-ort-b$b" node tests/bench/ort_bench.mjs "$ONNX_MODEL" "$images" $shape "$b"
    done
    # one attack on a team of 2 threads (blindspot attack --threads 2,
    # blindspotd --attack-threads 2): the convolutional nets, against 1
    for t in 1 2; do
        measure "team-resnet-net-t$t" env BENCH_THREADS=$t $CORE net "$ONNX_MODEL" 1
        measure "team-resnet-attack-t$t" env BENCH_THREADS=$t $CORE attack "$ONNX_MODEL" "$images" "$N_ONNX"
        measure "team-cnn-net-t$t" env BENCH_THREADS=$t $CORE net models/cnn.safetensors 1
        measure "team-cnn-attack-t$t" env BENCH_THREADS=$t $CORE attack models/cnn.safetensors data 10
    done
    printf 'load_end\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/onnx-machine.tsv"
}

if [ "$ONLY" = onnx ]; then
    bench_onnx
    $PY tests/bench/report.py "$OUT" docs/benchmarks.md
    exit
fi

# --- the machine ---------------------------------------------------------------
{
    printf 'cpu\t%s\n' "$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
    printf 'cores\t%s\n' "$(getconf _NPROCESSORS_ONLN)"
    printf 'memory\t%s\n' "$(awk '/MemTotal/ {printf "%.1f GB", $2/1048576}' /proc/meminfo)"
    printf 'kernel\t%s\n' "$(uname -r)"
    printf 'torch\t%s\n' "$($PY -c 'import torch; print(torch.__version__)')"
    printf 'scipy\t%s\n' "$($PY -c 'import scipy; print(scipy.__version__)')"
    printf 'load_start\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/machine.tsv"
load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" 'BEGIN {exit !(l > 0.5)}'; then
    say "warning: load average $load: other work is running, timings will be low"
fi
measure peak $CORE peak

# --- the peer's predictions are ours ---------------------------------------------
for m in $MODELS; do
    printf 'labels-%s\t%s\n' "$m" "$CORE predict models/$m.safetensors data" >> "$OUT/commands.tsv"
    $CORE predict "models/$m.safetensors" data > "$OUT/labels-$m.txt"
    measure "predict-$m" $PEER predict "models/$m.safetensors" data "$OUT/labels-$m.txt" ||
        say "MISMATCH: the peer's predictions differ from ours on $m (see $OUT/predict-$m.json)"
done

# --- the attack, peer and core, same images and targets ------------------------------
for m in $MODELS; do
    n=$N; [ "$m" = cnn ] && n=$N_CNN
    measure "peer-$m" $PEER attack "models/$m.safetensors" data "$n"
    measure "core-$m" $CORE attack "models/$m.safetensors" data "$n"
done

# the search as main did it before warm starts (SciPy's factr 1e7, every c
# from the original image, as the peer), and the c search as 4 lanes of one
# batch: the same images, so report.py sets their distortions side by side
PREVIOUS="BENCH_FACTR=1e7 BENCH_WARM_START=false"
for m in $MODELS; do
    n=$N; [ "$m" = cnn ] && n=$N_CNN
    measure "core-$m-previous" env $PREVIOUS $CORE attack "models/$m.safetensors" data "$n"
done
for m in fc100-100-10 cnn; do
    n=$N; [ "$m" = cnn ] && n=$N_CNN
    measure "core-$m-lanes4" env BENCH_LANES=4 $CORE attack "models/$m.safetensors" data "$n"
done

# the same, with the 9 other labels of each image in one call (the peer still
# attacks them one after the other)
for m in fc100-100-10 fc200-200-10 cnn; do
    n=$N_K9; [ "$m" = cnn ] && n=$N_K9_CNN
    measure "peer-$m-k9" $PEER attack "models/$m.safetensors" data "$n" 9
    measure "core-$m-k9" $CORE attack "models/$m.safetensors" data "$n" 1 9
done

# --- network evaluation against the sgemm peak -------------------------------------
for m in $MODELS; do
    for b in 1 9 64; do
        measure "net-$m-b$b" $CORE net "models/$m.safetensors" "$b"
    done
done

# --- 1 and 2 threads; targets attacked together -------------------------------------
# (two rounds, 1 then 2 threads each: the report keeps each count's faster
# run, as a machine shared with other work only ever slows a run down)
for r in 1 2; do
    for t in 1 2; do
        measure "threads-fc100-100-10-t$t-r$r" $CORE attack models/fc100-100-10.safetensors data 200 "$t"
        measure "threads-cnn-t$t-r$r" $CORE attack models/cnn.safetensors data 40 "$t"
    done
done
for k in 1 3 9; do
    measure "targets-fc100-100-10-k$k" $CORE attack models/fc100-100-10.safetensors data 20 1 "$k"
    measure "targets-cnn-k$k" $CORE attack models/cnn.safetensors data 4 1 "$k"
done

# --- where the time goes (perf, when the kernel lets us) ---------------------------------
if perf record -q -o "$OUT/perf-probe.data" -- true > /dev/null 2>&1; then
    # which source file each of our functions is in, for report.py's groups
    for o in build/obj/core/*.o; do
        nm --defined-only "$o" | awk -v f="$(basename "$o" .o)" 'NF == 3 {print f "\t" $3}'
    done > "$OUT/symbols.tsv"
    for m in fc100-100-10 cnn; do
        n=100; [ "$m" = cnn ] && n=10
        measure "perf-$m" perf record -q -F 2000 -o "$OUT/perf-$m.data" -- \
            $CORE attack "models/$m.safetensors" data "$n"
        perf report -i "$OUT/perf-$m.data" --no-children --sort pid,dso,symbol --stdio -g none \
            2> /dev/null | grep '%' > "$OUT/perf-$m.txt" || true
    done
    # the Fortran L-BFGS-B 3.0 times itself (timer -> gfortran cpu_time ->
    # getrusage); the C port does not
    if perf stat -x, -e syscalls:sys_enter_getrusage -o "$OUT/getrusage.csv" -- \
            env BENCH_OPTIMIZER=reference $CORE attack models/fc100-100-10.safetensors data 20 \
            > "$OUT/getrusage-run.json" 2> /dev/null; then
        printf 'getrusage\t%s\n' "perf stat -e syscalls:sys_enter_getrusage -- env BENCH_OPTIMIZER=reference $CORE attack models/fc100-100-10.safetensors data 20" \
            >> "$OUT/commands.tsv"
    fi
else
    say "perf: not usable here (perf_event_paranoid?); no profile"
fi

# --- over HTTP -------------------------------------------------------------------
# start_daemon NAME FLAGS...: blindspotd serving the zoo with 2 workers on a
# port of the kernel's choosing; sets daemon (its pid) and url
start_daemon() {
    local name=$1; shift
    build/blindspotd --listen 127.0.0.1:0 --models models --data data --workers 2 \
        --state "$OUT/state-$name.sqlite" "$@" 2> "$OUT/blindspotd-$name.log" &
    daemon=$!
    trap 'kill "$daemon" 2>/dev/null || true' EXIT
    if ! port=$(daemon_port "$OUT/blindspotd-$name.log" "$daemon"); then
        say "HTTP: blindspotd did not become ready (log: $OUT/blindspotd-$name.log)"
        exit 1
    fi
    url=http://127.0.0.1:$port
    printf 'daemon-%s\t%s\n' "$name" "build/blindspotd --listen 127.0.0.1:0 --models models --data data --workers 2 --state FILE${*:+ $*}" \
        >> "$OUT/commands.tsv"
}
stop_daemon() {
    kill "$daemon"
    wait "$daemon" || true
    trap - EXIT
}

if [ ! -x build/blindspotd ]; then
    say "HTTP: build/blindspotd does not exist yet; skipping the HTTP benchmarks (no figures)"
    echo "build/blindspotd does not exist yet" > "$OUT/http-skipped.txt"
else
    start_daemon http
    rss() { awk -v what="$1" '$1 == what":" {print $2}' "/proc/$daemon/status"; }
    printf 'rss_ready_kb\t%s\n' "$(rss VmRSS)" > "$OUT/daemon.tsv"
    HTTP="$PY tests/bench/http_bench.py"
    for m in fc100-100-10 fc200-200-10 ae400-10 cnn; do
        n=$N; [ "$m" = cnn ] && n=10
        for c in 1 2; do
            measure "http-$m-c$c" $HTTP attack "$url" "$m" data "$n" "$c"
        done
    done
    $HTTP infer-body fc100-100-10 data > "$OUT/infer-body.json"
    # one wrk thread: the load generator shares the 2 cores with the daemon
    measure wrk-infer env BENCH_INFER_BODY="$OUT/infer-body.json" \
        wrk -t1 -c32 -d10s -s tests/bench/infer.lua "$url/v2/models/fc100-100-10/infer"
    printf 'rss_after_kb\t%s\nhwm_kb\t%s\n' "$(rss VmRSS)" "$(rss VmHWM)" >> "$OUT/daemon.tsv"
    stop_daemon

    # Attack throughput, 32 clients on FC100: each attack alone with the
    # previous search (factr 1e7, no warm starts: the daemon before the
    # lockstep engine), each alone with the defaults, then the defaults with
    # attacks batched across requests, so that the search's share and the
    # batching's show apart. wrk (one thread) cycles through the same images
    # and targets in all three.
    $HTTP attack-bodies fc100-100-10 data "$N_HTTP" '{"factr": 1e7, "warm_start": false}' \
        > "$OUT/attack-bodies-previous.txt"
    $HTTP attack-bodies fc100-100-10 data "$N_HTTP" > "$OUT/attack-bodies-defaults.txt"
    for way in previous alone batched; do
        bodies=$OUT/attack-bodies-defaults.txt
        case $way in
        previous) start_daemon $way --attack-batch 1; bodies=$OUT/attack-bodies-previous.txt ;;
        alone) start_daemon $way --attack-batch 1 ;;
        batched) start_daemon $way ;;
        esac
        measure "wrk-attack-$way" env BENCH_ATTACK_BODIES="$bodies" \
            wrk -t1 -c32 -d"${WRK_SECONDS}s" --timeout 30s -s tests/bench/attack.lua "$url/v1/attacks"
        stop_daemon
    done
fi
bench_onnx
printf 'load_end\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.tsv"

# --- the report ------------------------------------------------------------------
$PY tests/bench/report.py "$OUT" docs/benchmarks.md
