#!/usr/bin/env bash
# Makes the Debian base images the shipped Dockerfiles start from, without a registry:
# debootstrap's minbase of bookworm, imported as debian:bookworm and debian:bookworm-slim.
# An image that already exists is kept (the cache). Needs root, debootstrap and a running
# Docker daemon; apt inside the images reaches Debian's archive through the host network.
# Usage: tests/container/base_images.sh
set -euo pipefail

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

if have_image debian:bookworm && have_image debian:bookworm-slim; then
    exit 0
fi
command -v debootstrap >/dev/null || {
    echo "base_images.sh: debootstrap is missing (apt-get install debootstrap)" >&2
    exit 1
}

rootfs=$(mktemp -d /tmp/spoa-bookworm.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "== debootstrap bookworm (minbase) into $rootfs"
debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$rootfs.log" 2>&1 || {
    tail -20 "$rootfs.log" >&2
    exit 1
}
rm -f "$rootfs.log"

# The same suites as a Debian image: without security and updates, packages built on an
# up-to-date host could depend on library versions the image cannot install.
cat >"$rootfs/etc/apt/sources.list" <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
# What Debian's container images configure: no recommends, no caches left in layers.
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
APT::Install-Recommends "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
EOF
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

echo "== docker import debian:bookworm"
tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - debian:bookworm >/dev/null

# The slim variant, as Debian's: no manuals, documentation (but the copyright files) or
# translations, now or in what apt installs later.
[ -d "$rootfs/usr/share/doc" ] || { echo "base_images.sh: no rootfs at '$rootfs'" >&2; exit 1; }
printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
    'path-exclude /usr/share/locale/*' 'path-include /usr/share/locale/locale.alias' \
    >"$rootfs/etc/dpkg/dpkg.cfg.d/slim"
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$rootfs/usr/share/man" "$rootfs/usr/share/info" -mindepth 1 -delete
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
echo "== docker import debian:bookworm-slim"
tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - debian:bookworm-slim >/dev/null
docker image ls debian
