#!/usr/bin/env bash
# Build an emulated Raspberry Pi userland: Debian Bookworm arm64 with Python 3.11 (what
# Raspberry Pi OS Bookworm ships) unpacked into ROOT, and the project's aarch64 runtime wheels
# (numpy<2, tflite-runtime 2.14, OpenCV 4.11) unpacked into SITE.
#
#   .ci/pi_rootfs.sh ROOT SITE
#   qemu-aarch64-static -cpu cortex-a72 -L ROOT ROOT/usr/bin/python3.11 script.py   # with PYTHONPATH=SITE
#
# Nothing here runs under emulation: the .debs are unpacked with `dpkg -x` and the wheels are
# resolved by the host's pip for the aarch64 platform. binfmt does not work in our sandboxes,
# so qemu is always called explicitly. The machine's own apt sources are used; no mirror
# address is written anywhere. Downloads are cached in $BINLAND_PI_CACHE (default
# ~/.cache/binland/pi) so a second build is cheap, but an empty cache only costs time.
# Idempotent: a stamp file in ROOT and in SITE records what was installed.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 ROOT SITE" >&2
  exit 2
fi
ROOT=$(realpath -m "$1")
SITE=$(realpath -m "$2")
CACHE=${BINLAND_PI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/binland/pi}
# Any pip works (it only downloads and unpacks); PIP="/path/to/python -m pip" picks one.
if [[ -z ${PIP:-} ]]; then
  if python3 -m pip --version >/dev/null 2>&1; then PIP="python3 -m pip"
  elif command -v pip >/dev/null; then PIP=pip
  else
    echo "pi_rootfs: no pip found; set PIP=\"/path/to/python -m pip\"" >&2
    exit 2
  fi
fi

# Python 3.11 and the shared libraries it and the wheels load (see docs / FACTS section 5).
DEBS=(python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 zlib1g libexpat1
  libssl3 libffi8 libbz2-1.0 liblzma5 libsqlite3-0 libncursesw6 libtinfo6 libreadline8
  libuuid1 libstdc++6 libgcc-s1 libcrypt1 libdb5.3 libgdbm6 libnsl2 libtirpc3)
ARCH_ALL_DEBS=(media-types)
WHEELS=("numpy<2" "tflite-runtime==2.14.0" "opencv-python-headless==4.11.0.86")
PLATFORM_ARGS=(--only-binary=:all: --python-version 3.11 --implementation cp
  --platform manylinux_2_34_aarch64 --platform manylinux_2_17_aarch64
  --platform manylinux2014_aarch64)

ROOT_STAMP_WANT="debs: ${DEBS[*]} ${ARCH_ALL_DEBS[*]}"
SITE_STAMP_WANT="wheels: ${WHEELS[*]} ${PLATFORM_ARGS[*]}"

sudo_if_needed() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_update_once() {
  if [[ $apt_updated -eq 0 ]]; then
    sudo_if_needed apt-get update -q
    apt_updated=1
  fi
}

log() { echo "pi_rootfs: $*" >&2; }

# --- host tools -------------------------------------------------------------------------------
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  log "adding the arm64 dpkg architecture"
  sudo_if_needed dpkg --add-architecture arm64
  apt_update_once
fi
# libc6-dev-arm64-cross is only a Recommends of the cross compiler, and linking needs it.
if ! command -v qemu-aarch64-static >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null ||
  [[ ! -e /usr/aarch64-linux-gnu/include/stdio.h ]]; then
  log "installing qemu-user-static and gcc-aarch64-linux-gnu"
  apt_update_once
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    qemu-user-static gcc-aarch64-linux-gnu libc6-dev-arm64-cross
fi

# --- the Debian arm64 userland ----------------------------------------------------------------
if [[ -f "$ROOT/.binland-rootfs" && "$(cat "$ROOT/.binland-rootfs")" == "$ROOT_STAMP_WANT" ]]; then
  log "rootfs up to date: $ROOT"
else
  mkdir -p "$CACHE/debs"
  cached_deb() { # newest cached .deb of package $1 for architecture $2, or nothing
    find "$CACHE/debs" -maxdepth 1 -name "${1}_*_${2}.deb" | sort -V | tail -n 1
  }
  missing=()
  for p in "${DEBS[@]}"; do [[ -n $(cached_deb "$p" arm64) ]] || missing+=("$p:arm64"); done
  for p in "${ARCH_ALL_DEBS[@]}"; do [[ -n $(cached_deb "$p" all) ]] || missing+=("$p"); done
  if [[ ${#missing[@]} -gt 0 ]]; then
    log "downloading ${#missing[@]} .debs into $CACHE/debs"
    # apt-get download writes into the current directory. If the arm64 package lists are
    # missing (architecture added by someone else, lists cleaned), update once and retry.
    if ! (cd "$CACHE/debs" && apt-get download -q "${missing[@]}"); then
      apt_update_once
      (cd "$CACHE/debs" && apt-get download -q "${missing[@]}")
    fi
  fi
  rm -rf "$ROOT.tmp"
  mkdir -p "$ROOT.tmp"
  for p in "${DEBS[@]}"; do dpkg -x "$(cached_deb "$p" arm64)" "$ROOT.tmp"; done
  for p in "${ARCH_ALL_DEBS[@]}"; do dpkg -x "$(cached_deb "$p" all)" "$ROOT.tmp"; done
  # Debian's python3-minimal normally adds these links; the Pi has them.
  ln -sf python3.11 "$ROOT.tmp/usr/bin/python3"
  echo "$ROOT_STAMP_WANT" >"$ROOT.tmp/.binland-rootfs"
  rm -rf "$ROOT"
  mv "$ROOT.tmp" "$ROOT"
  log "rootfs ready: $ROOT"
fi

# --- aarch64 wheels, resolved and unpacked by the host's pip ----------------------------------
if [[ -f "$SITE/.binland-site" && "$(cat "$SITE/.binland-site")" == "$SITE_STAMP_WANT" ]]; then
  log "site-packages up to date: $SITE"
else
  mkdir -p "$CACHE/wheels"
  # Try the cache alone first; go to the index only when something is missing there.
  if ! $PIP download -q --disable-pip-version-check --no-index --find-links "$CACHE/wheels" \
      --dest "$CACHE/wheels" "${PLATFORM_ARGS[@]}" "${WHEELS[@]}" 2>/dev/null; then
    log "downloading aarch64 wheels into $CACHE/wheels"
    $PIP download -q --disable-pip-version-check --dest "$CACHE/wheels" \
      "${PLATFORM_ARGS[@]}" "${WHEELS[@]}"
  fi
  rm -rf "$SITE.tmp"
  $PIP install -q --disable-pip-version-check --root-user-action=ignore --no-index --find-links "$CACHE/wheels" \
    --target "$SITE.tmp" --no-compile "${PLATFORM_ARGS[@]}" "${WHEELS[@]}"
  echo "$SITE_STAMP_WANT" >"$SITE.tmp/.binland-site"
  rm -rf "$SITE"
  mv "$SITE.tmp" "$SITE"
  log "site-packages ready: $SITE"
fi
