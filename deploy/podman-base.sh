#!/usr/bin/env bash
# podman for machines with no container registry but a Debian mirror: sets up
# podman with per-invocation configuration (vfs storage, runc, cgroupfs,
# explicit ulimits) under build/podman/, and imports a debootstrapped
# bookworm minbase as debian:bookworm-slim so the Dockerfile stays standard.
#
#   deploy/podman-base.sh            install what is missing, configure, import
#   source deploy/podman-base.sh env only export the CONTAINERS_* variables
#
# Afterwards, in the same shell (or with the variables it prints):
#   podman build --network host -t blindspot .
#
# The debootstrap tarball is cached in build/podman/ (rerun is seconds);
# MIRROR overrides the Debian mirror (default http://deb.debian.org/debian).
# Run it as root: debootstrap needs root, and the podman storage it sets up
# is root's (rootful podman, the way the configuration above is tested).

# (no `set -e` before the env part: sourced, it would stay in the caller's shell)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir="$root/build/podman"
mirror=${MIRROR:-http://deb.debian.org/debian}
mkdir -p "$dir"

# Configuration files podman reads instead of /etc/containers.
write_config() {
  local nofile
  nofile=$(ulimit -Hn)
  [ "$nofile" = unlimited ] && nofile=1048576
  cat > "$dir/storage.conf" <<CONF
[storage]
driver = "vfs"
runroot = "$dir/run"
graphroot = "$dir/storage"
CONF
  cat > "$dir/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  cat > "$dir/policy.json" <<CONF
{ "default": [{ "type": "insecureAcceptAnything" }] }
CONF
  cat > "$dir/registries.conf" <<CONF
unqualified-search-registries = []
short-name-mode = "permissive"
CONF
}

export CONTAINERS_STORAGE_CONF="$dir/storage.conf"
export CONTAINERS_CONF="$dir/containers.conf"
export CONTAINERS_REGISTRIES_CONF="$dir/registries.conf"
export BS_PODMAN_POLICY="$dir/policy.json"
write_config
if [ "${1:-}" = env ]; then
  return 0 2>/dev/null || {
    echo "export CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF"
    echo "export CONTAINERS_CONF=$CONTAINERS_CONF"
    echo "export CONTAINERS_REGISTRIES_CONF=$CONTAINERS_REGISTRIES_CONF"
    exit 0
  }
fi
set -euo pipefail

missing=""
for p in ${DEPLOY_PKGS:-podman runc debootstrap uidmap}; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "podman-base: installing$missing"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing
fi

tarball="$dir/bookworm-minbase.tar"
if [ ! -s "$tarball" ]; then
  echo "podman-base: debootstrap --variant=minbase bookworm from $mirror (a few minutes)"
  rm -rf "$dir/rootfs"
  debootstrap --variant=minbase bookworm "$dir/rootfs" "$mirror" > "$dir/debootstrap.log" 2>&1 || {
    tail -20 "$dir/debootstrap.log" >&2; exit 1; }
  # Slim it the way the official -slim image is: no apt lists or caches, and
  # dpkg told to leave out documentation and translations, now and later.
  r="$dir/rootfs"
  cat > "$r/etc/dpkg/dpkg.cfg.d/slim" <<CONF
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
CONF
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > "$r/etc/apt/apt.conf.d/slim"
  find "$r/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb \
         "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/var/log/*.log
  tar -C "$dir/rootfs" --numeric-owner -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
  rm -rf "$dir/rootfs"
fi

# The machine's own certificate authorities (a TLS-inspecting proxy's) go
# into the base image, where the build stage's ca-certificates and npm find
# them: /usr/local/share/ca-certificates/*.crt, and npm told to use the
# system's bundle. Nothing else of the machine is copied.
if ! podman image exists docker.io/library/debian:bookworm-slim; then
  image="$tarball"
  cas=$(ls "${EXTRA_CA_DIR:-/usr/local/share/ca-certificates}"/*.crt 2>/dev/null || true)
  if [ -n "$cas" ]; then
    extra="$dir/extra"
    rm -rf "$extra" && mkdir -p "$extra/usr/local/share/ca-certificates" "$extra/etc"
    cp $cas "$extra/usr/local/share/ca-certificates/"
    echo "cafile=/etc/ssl/certs/ca-certificates.crt" > "$extra/etc/npmrc"
    image="$dir/bookworm-minbase-ca.tar"
    cp "$tarball" "$image"
    tar -C "$extra" --numeric-owner --owner=0 --group=0 -rf "$image" ./usr/local/share/ca-certificates ./etc/npmrc
    echo "podman-base: with the machine's CAs:" $(basename -a $cas)
  fi
  podman import --signature-policy "$BS_PODMAN_POLICY" \
    --change 'CMD ["bash"]' "$image" docker.io/library/debian:bookworm-slim >/dev/null
  rm -rf "$dir/extra" "$dir/bookworm-minbase-ca.tar"
fi
echo "podman-base: debian:bookworm-slim ready ($(podman image ls --format '{{.Size}}' docker.io/library/debian:bookworm-slim))"
