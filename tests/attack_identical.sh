#!/usr/bin/env bash
# Runs `blindspot attack` for every method (and the lbfgs and pgd variants)
# on a few zoo models and test images with two builds of the command line,
# and compares their answers byte for byte: the JSON (without the seconds
# an attack took) and every adversarial PNG. For changes that must not move
# a single bit of any result (a refactoring of the attack core).
#
#   tests/attack_identical.sh OLD_BLINDSPOT NEW_BLINDSPOT [OUT_DIR]
#
# Run from the repository root (models/ and data/ in place). Exits non-zero
# and names the runs that differ when any does.
set -u
old=${1:?usage: $0 OLD_BLINDSPOT NEW_BLINDSPOT [OUT_DIR]}
new=${2:?usage: $0 OLD_BLINDSPOT NEW_BLINDSPOT [OUT_DIR]}
out=${3:-$(mktemp -d)}
mkdir -p "$out/old" "$out/new"

models="fc10-1e-4 fc100-100-10 ae400-10 cnn"
images="0 1 7"
# method and extra parameters, one variant a line
variants=$(cat <<'EOF'
lbfgs
lbfgs optimizer=reference
lbfgs norm=l1
lbfgs quantize=false
adam-l1 steps=300
adam-l1 steps=200 init=zeros c_search=true search_steps=3
fgsm
pgd
pgd pgd_norm=l2
cw-l2 steps=60
EOF
)

runs=0
differ=0
while read -r method extra; do
    args=(--method "$method")
    for p in $extra; do
        args+=(--param "$p")
    done
    tag=$method${extra:+-${extra// /-}}
    for m in $models; do
        for i in $images; do
            name=$tag-$m-$i
            for side in old new; do
                bin=$old
                [ "$side" = new ] && bin=$new
                "$bin" attack --model "models/$m.safetensors" --dataset mnist --index "$i" \
                    --target all --models none --json -o "$out/$side/$name.png" "${args[@]}" |
                    grep -v '"seconds":' >"$out/$side/$name.json"
            done
            runs=$((runs + 1))
            for f in "$out/old/$name"*; do
                if ! cmp -s "$f" "$out/new/$(basename "$f")"; then
                    echo "differs: $(basename "$f")"
                    differ=$((differ + 1))
                fi
            done
        done
    done
done <<<"$variants"
files=$(find "$out/old" -type f | wc -l)
echo "$runs runs, $files files compared, $differ differ"
[ "$differ" -eq 0 ] && [ "$files" -gt 0 ]
