#!/usr/bin/env bash
# Installs spoa from the build tree into a scratch prefix, then configures and builds the
# example user agent (agent/examples/greeting-agent) with find_package(spoa) against it.
set -euo pipefail
build_dir=$1 source_dir=$2 work=$3 cxx_flags=${4:-}
rm -rf "$work" && mkdir -p "$work"
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
cmake -S "$source_dir/agent/examples/greeting-agent" -B "$work/build" -G Ninja \
    -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_CXX_FLAGS="$cxx_flags" >/dev/null
cmake --build "$work/build"
"$work/build/greeting-agent" unix:/nonexistent-dir/sock 2>/dev/null && {
    echo "expected the example to fail on an unusable listen address"; exit 1; }
echo "consumer built against the installed package: OK"
