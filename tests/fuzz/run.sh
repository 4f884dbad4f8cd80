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
targets=(fuzz_safetensors_header fuzz_gguf)
ninja -C "$build" "${targets[@]/#/tests/fuzz/}"

work=$(mktemp -d "${TMPDIR:-/tmp}/arq-fuzz.XXXXXX")
# Seeds: small valid files, so the fuzzer starts inside the formats rather than at the magic.
mkdir -p "$work/fuzz_safetensors_header" "$work/fuzz_gguf"
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
PY
fi

status=0
for t in "${targets[@]}"; do
  echo "== $t: ${secs}s"
  if ! (cd "$work" && "$OLDPWD/$build/tests/fuzz/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 "$work/$t" 2>"$work/$t.log"); then
    echo "!! $t failed; log and reproducer in $work" >&2
    tail -40 "$work/$t.log" >&2
    status=1
  else
    grep -E "^(stat::number_of_executed_units|Done)" "$work/$t.log" || tail -2 "$work/$t.log"
  fi
done
[ $status -eq 0 ] && rm -rf "$work"
exit $status
