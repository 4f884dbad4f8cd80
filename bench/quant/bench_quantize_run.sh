#!/usr/bin/env bash
# Whole-run benchmark of `ar-quant quantize` (issue 6 "Benchmarks"): wall time and peak RSS.
#
#   bench/quant/bench_quantize_run.sh [AR_QUANT] [REPEATS]      # defaults: build/apps/ar-quant, 3
#
# 1. stories260k, default recipe (W4G32 sym, iters 200, 128 × 256 samples of the first 80 % of
#    tinystories-calib.txt, as README "Quality"), --format auto_round: wall seconds and VmHWM
#    (/usr/bin/time's "Maximum resident set size") per run, medians.
# 2. A random Llama with bigger shapes (hidden 2048, intermediate 5632, 16/8 heads, 8 blocks,
#    bf16, untied, ~1.0 GB), --iters 2, 8 × 64 samples, --format fake and auto_round: peak RSS
#    against what the run must hold (one block's weights + the activation caches, as printed by
#    the job) and against the model's size on disk.
#
# Not a timed test: it needs ../shared (stories260k, tokenizer, text) and a few minutes on
# 2 cores. ARQ_BENCH_SKIP_STORIES=1 / ARQ_BENCH_SKIP_BIG=1 skip a part; ARQ_BENCH_TMP sets
# the scratch folder (default /tmp; the big model takes ~1 GB there, removed at the end).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
arq=${1:-$root/build/apps/ar-quant}
repeats=${2:-3}
shared=${ARQ_SHARED_DIR:-$root/../shared}
tmp=$(mktemp -d "${ARQ_BENCH_TMP:-/tmp}/arq-bench-run.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
[ -x "$arq" ] || { echo "no ar-quant at $arq (pass it as the first argument)" >&2; exit 2; }
[ -d "$shared/models/stories260k" ] || { echo "needs $shared/models/stories260k" >&2; exit 2; }

median() { sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# run LABEL ARGS...: one timed run; appends "wall_s maxrss_mib" to $tmp/LABEL.txt and keeps the
# job's own memory line in $tmp/LABEL.log.
run() {
  local label=$1; shift
  rm -rf "$tmp/out"
  /usr/bin/time -f "%e %M" -o "$tmp/time.txt" "$arq" quantize "$@" --output_dir "$tmp/out" > "$tmp/run.log" 2>&1 ||
    { cat "$tmp/run.log" >&2; exit 1; }
  read -r wall kb < "$tmp/time.txt"
  echo "$wall $(awk -v k="$kb" 'BEGIN {printf "%.1f", k / 1024}')" >> "$tmp/$label.txt"
  grep -E '^(peak RSS|evaluation:)' "$tmp/run.log" | tail -1 > "$tmp/$label.log"
  printf '  %-22s wall %7.1f s  max RSS %8.1f MiB   | %s\n' "$label" "$wall" "$(awk -v k="$kb" 'BEGIN {print k / 1024}')" \
    "$(cat "$tmp/$label.log")"
}

summary() {
  local label=$1
  printf '%-22s median wall %7.1f s, median max RSS %8.1f MiB (%d runs)\n' "$label" \
    "$(cut -d' ' -f1 "$tmp/$label.txt" | median)" "$(cut -d' ' -f2 "$tmp/$label.txt" | median)" "$(wc -l < "$tmp/$label.txt")"
}

echo "ar-quant: $arq; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%F' '%H:%M) UTC"

if [ "${ARQ_BENCH_SKIP_STORIES:-0}" != 1 ]; then
  # The README "Quality" split: the first 80 % of the blank-line-separated stories, joined by a
  # blank line (tests/reference/check_autoround.py split_stories).
  awk 'BEGIN {RS=""; ORS=""} {s[NR]=$0} END {n=int(NR*0.8); for (i=1; i<=n; i++) {print s[i]; print (i<n ? "\n\n" : "\n")}}' \
    "$shared/data/tinystories-calib.txt" > "$tmp/calib80.txt"
  echo "stories260k default recipe (W4G32, iters 200, nsamples 128, seqlen 256, auto_round), $repeats runs:"
  for _ in $(seq "$repeats"); do
    run stories260k --model "$shared/models/stories260k" --bits 4 --group_size 32 --iters 200 \
      --dataset "$tmp/calib80.txt:concat=true" --nsamples 128 --seqlen 256 --format auto_round
  done
  summary stories260k
fi

if [ "${ARQ_BENCH_SKIP_BIG:-0}" != 1 ]; then
  big=$tmp/random-2048x8
  "$arq" make-model --arch llama --output_dir "$big" --dtype bf16 --seed 1 --hidden_size 2048 \
    --intermediate_size 5632 --num_hidden_layers 8 --num_attention_heads 16 --num_key_value_heads 8 \
    --vocab_size 512 --tokenizer "$shared/models/stories260k" > /dev/null
  model_mib=$(du -m --apparent-size "$big/model.safetensors" | cut -f1)
  head -c 200000 "$shared/data/tinystories-calib.txt" > "$tmp/calib-small.txt"
  echo "random llama hidden 2048 × 8 blocks, bf16 ($model_mib MiB on disk), iters 2, nsamples 8, seqlen 64, $repeats runs each:"
  for fmt in fake auto_round; do
    for _ in $(seq "$repeats"); do
      run "big-$fmt" --model "$big" --bits 4 --group_size 128 --iters 2 --nsamples 8 --seqlen 64 --batch_size 8 \
        --dataset "$tmp/calib-small.txt:concat=true" --format "$fmt"
    done
  done
  summary big-fake
  summary big-auto_round
  echo "model on disk: $model_mib MiB; job's own accounting (last run): $(cat "$tmp/big-auto_round.log")"
fi
