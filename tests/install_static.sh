#!/usr/bin/env bash
# Builds examples/edge_example.cpp the way an edge deployment build would: against the
# *installed* headers and the static libarquant.a, found through pkg-config (arquant.pc).
# Usage: install_static.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
DESTDIR="$tmp/dest" meson install -C "$build" --quiet --no-rebuild --tags devel,runtime >/dev/null
prefix=$(meson introspect "$build" --buildoptions | python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"]=="prefix"][0])')
root="$tmp/dest$prefix"
pc=$(find "$root" -name arquant.pc | head -1)
[ -n "$pc" ] || { echo "arquant.pc was not installed"; exit 1; }
a=$(find "$root" -name libarquant.a | head -1)
[ -n "$a" ] || { echo "libarquant.a was not installed (build with default_library=static or both)"; exit 1; }
for h in engine/tensor.h engine/ops.h arq_config.h; do
  [ -f "$root/include/arquant/$h" ] || { echo "header $h not installed"; exit 1; }
done
export PKG_CONFIG_PATH="$(dirname "$pc")"
export PKG_CONFIG_SYSROOT_DIR="$tmp/dest"
cflags=$(pkg-config --cflags arquant)
# Everything but -larquant from the static link line; the archive itself is named explicitly.
libs=$(pkg-config --libs --static arquant | sed -e 's/-larquant\b//g')
[ -d /usr/local/cuda/lib64 ] && libs="$libs -L/usr/local/cuda/lib64"
c++ -std=c++20 -O1 $cflags "$src/examples/edge_example.cpp" "$a" $libs -o "$tmp/edge_example"
if ldd "$tmp/edge_example" | grep -q libarquant; then
  echo "edge_example linked libarquant dynamically"; exit 1
fi
"$tmp/edge_example"
echo "static install + link OK ($a)"
