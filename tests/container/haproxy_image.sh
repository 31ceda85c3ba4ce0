#!/usr/bin/env bash
# Builds the haproxy:3.2 stand-in image (tests/container/haproxy-image/) around an HAProxy
# binary built on the host, so that the shipped compose file, which names haproxy:3.2, runs
# without a registry. Skipped when the tag exists and was built from the same binary and the
# same image files (label spoa.haproxy.binary.sha256 holds a hash of all three).
# Usage: tests/container/haproxy_image.sh BINARY [TAG]     (TAG defaults to haproxy:3.2)
# Needs a running Docker daemon and the Debian base images (tests/container/base_images.sh).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
binary=${1:?usage: haproxy_image.sh BINARY [TAG]}
tag=${2:-haproxy:3.2}
[ -x "$binary" ] || { echo "haproxy_image.sh: not an executable: $binary" >&2; exit 2; }

# The binary and the files the image is made of: a change to any of them means a rebuild.
sum=$(cat "$binary" "$here/haproxy-image/Dockerfile" "$here/haproxy-image/docker-entrypoint.sh" |
      sha256sum | cut -d' ' -f1)
have=$(docker image inspect -f '{{index .Config.Labels "spoa.haproxy.binary.sha256"}}' "$tag" \
       2>/dev/null || true)
if [ "$have" = "$sum" ]; then
    echo "== $tag is up to date ($("$binary" -v | head -1))"
    exit 0
fi

# A build context with only what the image needs (the binary's directory holds a whole build).
context=$(mktemp -d /tmp/spoa-haproxy-image.XXXXXX)
trap 'rm -rf "$context"' EXIT
cp "$binary" "$context/haproxy"
cp "$here/haproxy-image/Dockerfile" "$here/haproxy-image/docker-entrypoint.sh" "$context/"
chmod 755 "$context/haproxy" "$context/docker-entrypoint.sh"
echo "== building $tag from $binary ($("$binary" -v | head -1))"
# --network host: apt inside the build reaches Debian's archive even without a Docker bridge.
if ! docker build --network host --build-arg "BINARY_SHA256=$sum" -t "$tag" "$context" \
        >"$context/build.log" 2>&1; then
    tail -n 30 "$context/build.log" >&2
    exit 1
fi
# The image must run the binary it was given: a missing library fails here, not in a test.
version=$(docker run --rm --network none "$tag" -v)
echo "${version%%$'\n'*}"
