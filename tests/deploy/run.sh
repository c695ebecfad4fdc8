#!/usr/bin/env bash
# make test-deploy: the container image and the manifests of deploy/, on a
# machine with podman (deploy/podman-base.sh sets it up without a registry).
#
#   bash tests/deploy/run.sh            every step, in order
#   bash tests/deploy/run.sh STEP...    only these (the image is built first
#                                       when a step needs it and it is missing)
#
# Steps, each printing PASS or FAIL with the reason:
#   manifests         every manifest of deploy/ valid against the Kubernetes API
#                     schemas (kubernetes-models) and KServe's CRD fields; the
#                     Compose and Prometheus files parse; systemd-analyze
#                     verify accepts the unit (where systemd is installed)
#   manifests-reject  the validator refuses a misspelt field (`replica: 2`,
#                     a ServingRuntime's `supportedModelFormat`)
#   image             `podman build .` of the top-level Dockerfile; its size
#   serve             the image run --read-only --cap-drop=ALL as a non-root
#                     user becomes ready and healthy; an L-BFGS attack over
#                     curl answers a PNG that decodes to the adversarial label
#   sigterm           SIGTERM during an attack: the attack is answered, the
#                     container exits 0
#   models-only       only a model folder mounted, no datasets: ready, and an
#                     inference answers
#   shards            `blindspot evaluate --shard I/3` three times, merged with
#                     --merge, equals the unsharded document apart from timings
# The last line is "N passed, N failed"; the exit status is 1 when any failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

IMAGE=localhost/blindspot:test
KUBERNETES_MODELS=5.1.0
YAML=2.8.1
npm_dir=build/npm-deploy
work=$(mktemp -d)
chmod 755 "$work" # the containers' user reads the shards and models put here
passed=0 failed=0
containers=()

cleanup() {
  for c in "${containers[@]}"; do podman rm -f -t 0 "$c" >/dev/null 2>&1; done
  rm -rf "$work"
}
trap cleanup EXIT

pass() { echo "PASS $step${1:+: $1}"; passed=$((passed + 1)); }
fail() { echo "FAIL $step: $1"; failed=$((failed + 1)); }

# --- set-up ----------------------------------------------------------------------
podman_ready=0
need_podman() {
  [ "$podman_ready" = 1 ] && return 0
  deploy/podman-base.sh >/dev/null || { echo "deploy/podman-base.sh failed" >&2; return 1; }
  source deploy/podman-base.sh env
  podman_ready=1
}

need_validator() {
  [ -f "$npm_dir/node_modules/kubernetes-models/package.json" ] &&
    grep -q "\"version\": \"$KUBERNETES_MODELS\"" "$npm_dir/node_modules/kubernetes-models/package.json" &&
    return 0
  command -v npm >/dev/null || { echo "npm is missing (make deps installs it)" >&2; return 1; }
  npm install --prefix "$npm_dir" --no-audit --no-fund --silent \
    "kubernetes-models@$KUBERNETES_MODELS" "yaml@$YAML" >&2
}

need_image() {
  need_podman || return 1
  podman image exists "$IMAGE" || step_image >/dev/null
  podman image exists "$IMAGE"
}

# A free loopback port.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The first line of file $1 that is not one of podman's own log lines.
first_error() { grep -v '^time=' "$1" | head -1; }

# Starts the image as container $1 on a free port (in $port), with further
# podman run arguments; waits up to 60 s for ready.
start() {
  local name=$1; shift
  port=$(free_port)
  podman rm -f -t 0 "$name" >/dev/null 2>&1
  # (podman logs that it has no systemd to time the HEALTHCHECK with;
  # `serve` runs the check with `podman healthcheck run`)
  podman run -d --name "$name" --read-only --cap-drop=ALL -p "127.0.0.1:$port:8080" \
    "$@" "$IMAGE" >/dev/null 2>"$work/run.err" || { cat "$work/run.err" >&2; return 1; }
  containers+=("$name")
  for _ in $(seq 120); do
    build/blindspot health --timeout 1 "http://127.0.0.1:$port" >/dev/null 2>&1 && return 0
    [ "$(podman inspect -f '{{.State.Running}}' "$name")" = true ] || break
    sleep 0.5
  done
  podman logs "$name" 2>&1 | tail -5 >&2
  return 1
}

# --- steps -----------------------------------------------------------------------------
manifests=(deploy/k8s/*.yaml deploy/kserve/*.yaml)

step_manifests() {
  need_validator || { fail "cannot install kubernetes-models"; return; }
  local out
  if ! out=$(node tests/deploy/validate.mjs "$npm_dir/node_modules" "${manifests[@]}" 2>&1); then
    fail "$out"; return
  fi
  # Compose and Prometheus: YAML that parses, with the services named
  if ! out=$(node --input-type=module -e "
      const { parse } = await import('$root/$npm_dir/node_modules/yaml/dist/index.js');
      const fs = await import('node:fs');
      const c = parse(fs.readFileSync('deploy/compose.yaml', 'utf8'));
      const p = parse(fs.readFileSync('deploy/prometheus.yml', 'utf8'));
      if (!c.services.blindspotd || !c.services.prometheus) throw new Error('compose: services');
      if (p.scrape_configs[0].metrics_path !== '/metrics') throw new Error('prometheus: /metrics');" 2>&1); then
    fail "$out"; return
  fi
  # the systemd unit, where systemd-analyze is at hand, with this build's daemon
  if command -v systemd-analyze >/dev/null; then
    sed "s#^ExecStart=.*#ExecStart=$root/build/blindspotd#" deploy/systemd/blindspotd.service \
      > "$work/blindspotd.service"
    if ! out=$(systemd-analyze verify "$work/blindspotd.service" 2>&1) || [ -n "$out" ]; then
      fail "deploy/systemd/blindspotd.service: $out"; return
    fi
  fi
  pass "${#manifests[@]} manifests, compose.yaml, prometheus.yml, the systemd unit"
}

step_manifests_reject() {
  need_validator || { fail "cannot install kubernetes-models"; return; }
  sed 's/^  replicas: 2$/  replica: 2/' deploy/k8s/deployment.yaml > "$work/deployment.yaml"
  sed 's/^  supportedModelFormats:$/  supportedModelFormat:/' deploy/kserve/servingruntime.yaml \
    > "$work/servingruntime.yaml"
  local out f
  for f in deployment servingruntime; do
    cmp -s "$work/$f.yaml" deploy/*/"$f.yaml" && { fail "$f.yaml: nothing misspelt"; return; }
    if out=$(node tests/deploy/validate.mjs "$npm_dir/node_modules" "$work/$f.yaml" 2>&1); then
      fail "$f.yaml with a misspelt field passed"; return
    fi
    case $f in
      deployment) grep -q "unknown field 'replica'" <<<"$out" || { fail "$out"; return; } ;;
      servingruntime) grep -q "unknown field 'supportedModelFormat'" <<<"$out" || { fail "$out"; return; } ;;
    esac
  done
  pass
}

step_image() {
  need_podman || { fail "podman is not set up"; return; }
  local start=$SECONDS
  if ! podman build --network host --format docker -t "$IMAGE" . > "$work/build.log" 2>&1; then
    tail -20 "$work/build.log" >&2; fail "podman build failed"; return
  fi
  local size
  size=$(podman image inspect -f '{{.Size}}' "$IMAGE")
  pass "$((size / 1000000)) MB, built in $((SECONDS - start)) s"
}

step_serve() {
  need_image || { fail "no image"; return; }
  start bs-serve || { fail "not ready"; return; }
  local uid health
  uid=$(podman exec bs-serve id -u)
  [ "$uid" != 0 ] || { fail "runs as root"; return; }
  # even root (owner of /etc) cannot write there: the file system is read-only
  podman exec -u 0 bs-serve touch /etc/blindspot-write-test 2>/dev/null &&
    { fail "the root file system is writable"; return; }
  health=$(podman healthcheck run bs-serve 2>&1) || { fail "HEALTHCHECK failed: $health"; return; }
  curl -s -o "$work/adv.png" -D "$work/head" -H 'Accept: image/png' \
    -H 'Content-Type: application/json' \
    -d '{"model":"cnn","image":{"dataset":"mnist","index":18},"target":3,"method":"lbfgs"}' \
    "http://127.0.0.1:$port/v1/attacks"
  grep -q '^HTTP/1.1 200' "$work/head" || { fail "attack: $(head -1 "$work/head")"; return; }
  local label got
  label=$(tr -d '\r' < "$work/head" | sed -n 's/^X-Blindspot-Label: //ip')
  # judged here by the image's own model: the zoo the image trained is not
  # bit for bit the host's (training a CNN twice gives two models), and a
  # minimal perturbation need not fool another one
  podman cp bs-serve:/usr/share/blindspot/models/cnn.safetensors "$work/cnn.safetensors" ||
    { fail "cannot copy the image's model out"; return; }
  got=$(build/blindspot predict --model "$work/cnn.safetensors" --image "$work/adv.png" --json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["label"])') ||
    { fail "the answer is not a PNG that decodes"; return; }
  [ -n "$label" ] && [ "$got" = "$label" ] ||
    { fail "the PNG reads as $got here, the daemon said $label"; return; }
  pass "uid $uid, adversarial PNG labelled $label"
}

step_sigterm() {
  need_image || { fail "no image"; return; }
  start bs-sigterm || { fail "not ready"; return; }
  curl -s -o "$work/attack.json" -w '%{http_code} %{time_total}' -H 'Content-Type: application/json' \
    -d '{"model":"cnn","image":{"dataset":"mnist","index":18},"target":3,"method":"adam-l1","params":{"steps":20000}}' \
    "http://127.0.0.1:$port/v1/attacks" > "$work/status" &
  local curl_pid=$!
  sleep 1
  podman kill -s TERM bs-sigterm >/dev/null
  wait "$curl_pid"
  local code seconds rc
  read -r code seconds < "$work/status"
  rc=$(podman wait bs-sigterm)
  [ "$code" = 200 ] || { fail "the attack in flight answered $code"; return; }
  python3 -c "import sys; sys.exit(float('$seconds') <= 1)" ||
    { fail "the attack ended in $seconds s, before the SIGTERM"; return; }
  grep -q '"results"' "$work/attack.json" || { fail "the attack's answer has no results"; return; }
  [ "$rc" = 0 ] || { fail "exit status $rc"; return; }
  # (the log of an exited container may take a moment to be complete)
  for _ in 1 2 3 4 5; do
    podman logs bs-sigterm > "$work/sigterm.log" 2>&1
    grep -q 'SIGTERM: draining' "$work/sigterm.log" && break
    sleep 1
  done
  grep -q 'SIGTERM: draining' "$work/sigterm.log" ||
    { fail "no drain in the log: $(tail -3 "$work/sigterm.log")"; return; }
  pass "the attack (${seconds} s) answered 200, exit 0"
}

step_models_only() {
  need_image || { fail "no image"; return; }
  mkdir -p "$work/models" && cp models/cnn.safetensors "$work/models/"
  start bs-models -v "$work/models:/models:ro" -e BLINDSPOT_MODELS=/models \
    -e BLINDSPOT_DATA=/nonexistent || { fail "not ready with models only"; return; }
  local body out
  body=$(python3 -c 'import json; print(json.dumps({"inputs":[{"name":"input","shape":[1,1,28,28],"datatype":"FP32","data":[0.0]*784}]}))')
  out=$(curl -s -w ' %{http_code}' -H 'Content-Type: application/json' -d "$body" \
        "http://127.0.0.1:$port/v2/models/cnn/infer")
  [ "${out##* }" = 200 ] || { fail "infer answered: $out"; return; }
  pass
}

step_shards() {
  need_image || { fail "no image"; return; }
  local args=(evaluate --model-dir /usr/share/blindspot/models --models fc100-100-10,cnn --n 30
              --seed 1 --json)
  local run=(podman run --rm --read-only --cap-drop=ALL --entrypoint blindspot)
  local i
  "${run[@]}" "$IMAGE" "${args[@]}" > "$work/whole.json" 2>"$work/whole.err" ||
    { fail "the unsharded run: $(first_error "$work/whole.err")"; return; }
  for i in 0 1 2; do
    "${run[@]}" "$IMAGE" "${args[@]}" --shard "$i/3" > "$work/shard-$i.json" 2>"$work/shard.err" ||
      { fail "shard $i/3: $(first_error "$work/shard.err")"; return; }
  done
  "${run[@]}" -v "$work:/results:ro" "$IMAGE" evaluate --merge /results/shard-0.json \
    /results/shard-1.json /results/shard-2.json --json > "$work/merged.json" 2>"$work/merge.err" ||
    { fail "merge: $(first_error "$work/merge.err")"; return; }
  local diff
  diff=$(python3 - "$work/whole.json" "$work/merged.json" <<'PY'
import json, sys
TIMING = {"seconds", "elapsed", "ms", "started", "finished", "time", "duration"}
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in TIMING and "second" not in k}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
a, b = (strip(json.load(open(p))) for p in sys.argv[1:])
if a != b:
    print(json.dumps(a, sort_keys=True)[:300]); print(json.dumps(b, sort_keys=True)[:300])
PY
)
  [ -z "$diff" ] || { fail "the merge differs from the unsharded run: $diff"; return; }
  pass "3 shards merged equal the unsharded document"
}

all=(manifests manifests-reject image serve sigterm models-only shards)
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=("${all[@]}")
for step in "${steps[@]}"; do
  case " ${all[*]} " in
    *" $step "*) "step_${step//-/_}" ;;
    *) echo "unknown step '$step' (steps: ${all[*]})" >&2; exit 2 ;;
  esac
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
