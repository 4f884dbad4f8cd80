#!/usr/bin/env bash
# Build the libFuzzer targets with clang and run each for a fixed time (default 20 s).
#   tests/fuzz/run.sh [seconds]        build folder: $ARQ_FUZZ_BUILD or build-fuzz
# Exit status is non-zero when a target finds a crash (its reproducer is left in the work dir).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-20}
build=${ARQ_FUZZ_BUILD:-build-fuzz}
command -v clang++ >/dev/null || { echo "fuzz: clang++ not found (Debian: clang, libclang-rt-dev)" >&2; exit 1; }
if [ ! -f "$build/build.ninja" ]; then
  CXX=clang++ CC=clang meson setup "$build" -Dfuzz=true -Dcuda=disabled -Donednn=disabled \
    -Dtests=false -Dbenchmarks=false >/dev/null
fi
targets=(fuzz_safetensors_header fuzz_gguf fuzz_tokenizer_json)
ninja -C "$build" "${targets[@]/#/tests/fuzz/}"

work=$(mktemp -d "${TMPDIR:-/tmp}/arq-fuzz.XXXXXX")
# Seeds: small valid files, so the fuzzer starts inside the formats rather than at the magic.
mkdir -p "$work/fuzz_safetensors_header" "$work/fuzz_gguf" "$work/fuzz_tokenizer_json"
shared=${ARQ_SHARED_DIR:-../shared}
[ -f "$shared/models/stories260k.gguf" ] && head -c 4096 "$shared/models/stories260k.gguf" >"$work/fuzz_gguf/stories_head"
if command -v python3 >/dev/null; then
  python3 - "$work" <<'PY'
import struct, sys
w = sys.argv[1]
def st(name, header, data):
    h = header.encode()
    open(f"{w}/fuzz_safetensors_header/{name}", "wb").write(struct.pack("<Q", len(h)) + h + data)
st("f32", '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', bytes(range(8)))
st("mixed", '{"b":{"dtype":"BF16","shape":[1,2],"data_offsets":[0,4]},"c":{"dtype":"I8","shape":[],"data_offsets":[4,5]}}', bytes(5))
def s(x): return struct.pack("<Q", len(x)) + x
g = b"GGUF" + struct.pack("<IQQ", 3, 1, 2)
g += s(b"general.alignment") + struct.pack("<II", 4, 32)
g += s(b"tokens") + struct.pack("<IIQ", 9, 8, 2) + s(b"a") + s(b"bc")
g += s(b"t") + struct.pack("<IQQIQ", 2, 2, 1, 0, 0)
g += bytes(-len(g) % 32) + struct.pack("<ff", 1.0, -2.0)
open(f"{w}/fuzz_gguf/small", "wb").write(g)
import json
# tokenizer.json seeds: a byte alphabet, a few merges, added tokens and each pre-tokenizer kind.
bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
alpha, n = {}, 0
for b in range(256):
    alpha[b] = chr(b) if b in bs else chr(256 + n)
    if b not in bs: n += 1
vocab = {alpha[b]: b for b in range(256)}
merges = ["\u0120 t", "h e", "\u0120t he", "l l", "e ll", "1 2"]
for m in merges: vocab[m.replace(" ", "")] = len(vocab)
added = [{"id": len(vocab), "content": "<|endoftext|>", "special": True, "lstrip": False, "rstrip": False,
          "single_word": False, "normalized": False},
         {"id": len(vocab) + 1, "content": "<s>", "special": True, "lstrip": True, "rstrip": True,
          "single_word": True, "normalized": False}]
llama3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
pres = {
    "bytelevel": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    "llama3": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": llama3}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
    "digits": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithNext", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": False}]},
}
for name, pre in pres.items():
    tj = {"version": "1.0", "added_tokens": added, "normalizer": {"type": "NFC"} if name == "llama3" else None,
          "pre_tokenizer": pre,
          "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                             {"Sequence": {"id": "A", "type_id": 0}}],
                             "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                             "special_tokens": {"<s>": {"id": "<s>", "ids": [len(vocab) + 1], "tokens": ["<s>"]}}},
          "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
          "model": {"type": "BPE", "ignore_merges": name == "llama3", "vocab": vocab,
                    "merges": merges if name != "digits" else [m.split(" ") for m in merges]}}
    open(f"{w}/fuzz_tokenizer_json/{name}.json", "w").write(json.dumps(tj))
PY
fi

status=0
for t in "${targets[@]}"; do
  echo "== $t: ${secs}s"
  dict=()   # a libFuzzer dictionary next to the target, when there is one
  [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="$PWD/tests/fuzz/$t.dict")
  if ! (cd "$work" && "$OLDPWD/$build/tests/fuzz/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 "${dict[@]}" "$work/$t" 2>"$work/$t.log"); then
    echo "!! $t failed; log and reproducer in $work" >&2
    tail -40 "$work/$t.log" >&2
    status=1
  else
    grep -E "^(stat::number_of_executed_units|Done)" "$work/$t.log" || tail -2 "$work/$t.log"
  fi
done
[ $status -eq 0 ] && rm -rf "$work"
exit $status
