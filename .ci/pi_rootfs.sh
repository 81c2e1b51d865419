#!/usr/bin/env bash
# Build an emulated Raspberry Pi userland: Debian arm64 unpacked into ROOT, and the project's
# aarch64 runtime wheels unpacked into SITE.
#
#   .ci/pi_rootfs.sh ROOT SITE                      # Bookworm: Python 3.11, and in SITE numpy<2,
#                                                   # tflite-runtime 2.14, OpenCV 4.11
#   qemu-aarch64-static -cpu cortex-a72 -L ROOT ROOT/usr/bin/python3.11 script.py   # with PYTHONPATH=SITE
#
#   .ci/pi_rootfs.sh ROOT SITE trixie QEMU          # Trixie (Pi OS since late 2025): Python 3.13
#                                                   # and numpy 2.2 from apt; in SITE ai-edge-litert
#                                                   # and OpenCV 4.12   (no numpy: the system's);
#                                                   # QEMU: Trixie's qemu-aarch64 (10.x, static)
#   QEMU -cpu cortex-a76 -L ROOT ROOT/usr/bin/python3.13 script.py
#
# Trixie's packages come through a separate apt state (.ci/debian_suite.sh: this machine's own
# sources with the suite renamed), whose empty dpkg status makes `apt-get install -d` fetch the
# whole dependency closure. Bookworm's qemu 7.2 crashes ai-edge-litert at invoke (FACTS.md
# section 5), so the Trixie lane runs under Trixie's own qemu, unpacked from its .deb (a static
# binary; nothing is installed on this machine).
#
# Nothing here runs under emulation: the .debs are unpacked with `dpkg -x` and the wheels are
# resolved by the host's pip for the aarch64 platform. binfmt does not work in our sandboxes,
# so qemu is always called explicitly. The machine's own apt sources are used; no mirror
# address is written anywhere. Downloads are cached in $BINLAND_PI_CACHE (default
# ~/.cache/binland/pi) so a second build is cheap, but an empty cache only costs time.
# Idempotent: a stamp file in ROOT and in SITE records what was installed.
set -euo pipefail

if [[ $# -lt 2 || $# -gt 4 ]]; then
  echo "usage: $0 ROOT SITE [bookworm | trixie QEMU]" >&2
  exit 2
fi
ROOT=$(realpath -m "$1")
SITE=$(realpath -m "$2")
RELEASE=${3:-bookworm}
if [[ $RELEASE == trixie ]]; then
  if [[ $# -ne 4 ]]; then
    echo "usage: $0 ROOT SITE trixie QEMU" >&2
    exit 2
  fi
  QEMU_OUT=$(realpath -m "$4")
elif [[ $RELEASE != bookworm ]]; then
  echo "pi_rootfs: unknown release $RELEASE (bookworm or trixie)" >&2
  exit 2
fi
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

# --- Trixie: userland, qemu and wheels; then done ------------------------------------------------
if [[ $RELEASE == trixie ]]; then
  HERE=$(dirname "$(realpath "$0")")
  STATE="$CACHE/apt-trixie"
  # What Pi OS Trixie's python3-picamera2 brings: Python 3.13 and apt's numpy 2 (and base-files
  # for /etc/os-release, which edge.deploy and edge.doctor read).
  PACKAGES=(python3.13 python3-numpy base-files)
  TRIXIE_WHEELS=("ai-edge-litert>=2.3,<2.4" "opencv-python-headless>=4.12,<4.13")
  TRIXIE_PLATFORM_ARGS=(--only-binary=:all: --python-version 3.13 --implementation cp
    --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64
    --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64)
  ROOT_STAMP_WANT="trixie (2) closure of: ${PACKAGES[*]}"
  suite_apt() { APT_CONFIG="$STATE/apt.conf" apt-get -q -o Debug::NoLocking=1 "$@"; }
  ensure_suite() {
    if [[ -z ${suite_ready:-} ]]; then
      bash "$HERE/debian_suite.sh" "$STATE" trixie arm64 amd64
      suite_ready=1
    fi
  }

  if [[ -f "$ROOT/.binland-rootfs" && "$(cat "$ROOT/.binland-rootfs")" == "$ROOT_STAMP_WANT" ]]; then
    log "rootfs up to date: $ROOT"
  else
    ensure_suite
    # The closure, as (package, architecture) pairs, and its .debs in the state's archives.
    mapfile -t closure < <(suite_apt install -s -y "${PACKAGES[@]}" |
      sed -n 's/^Inst \([^ ]*\) ([^[]*\[\([a-z0-9]*\)\]).*/\1 \2/p')
    [[ ${#closure[@]} -gt 0 ]] || { log "apt found nothing to install for ${PACKAGES[*]}"; exit 1; }
    log "downloading ${#closure[@]} Trixie .debs (cached in $STATE/archives)"
    suite_apt install -d -y "${PACKAGES[@]}" >&2
    rm -rf "$ROOT.tmp"
    mkdir -p "$ROOT.tmp"
    for entry in "${closure[@]}"; do
      read -r name arch <<<"$entry"
      deb=$(find "$STATE/archives" -maxdepth 1 -name "${name}_*_${arch}.deb" | sort -V | tail -n 1)
      [[ -n $deb ]] || { log "missing .deb of $name ($arch)"; exit 1; }
      dpkg -x "$deb" "$ROOT.tmp"
    done
    # What update-alternatives does in libblas3's and liblapack3's postinst (numpy loads them).
    for lib in blas lapack; do
      ln -sf "$lib/lib$lib.so.3" "$ROOT.tmp/usr/lib/aarch64-linux-gnu/lib$lib.so.3"
    done
    ln -sf python3.13 "$ROOT.tmp/usr/bin/python3"
    for f in usr/bin/python3.13 usr/lib/ld-linux-aarch64.so.1 etc/os-release; do
      [[ -e "$ROOT.tmp/$f" ]] || { log "the unpacked userland lacks /$f"; exit 1; }
    done
    echo "$ROOT_STAMP_WANT" >"$ROOT.tmp/.binland-rootfs"
    rm -rf "$ROOT"
    mv "$ROOT.tmp" "$ROOT"
    log "rootfs ready: $ROOT"
  fi

  # Trixie's qemu-aarch64: the one binary, kept; its 70 MB .deb is not.
  QEMU_CACHE="$CACHE/qemu-trixie"
  if [[ ! -x "$QEMU_CACHE/qemu-aarch64" ]] || ! "$QEMU_CACHE/qemu-aarch64" --version >/dev/null 2>&1; then
    ensure_suite
    rm -rf "$QEMU_CACHE.tmp"
    mkdir -p "$QEMU_CACHE.tmp"
    log "downloading Trixie's qemu-user (amd64) for its static qemu-aarch64"
    (cd "$QEMU_CACHE.tmp" && suite_apt download qemu-user:amd64 >&2)
    dpkg-deb --fsys-tarfile "$QEMU_CACHE.tmp"/qemu-user_*.deb | tar -x -C "$QEMU_CACHE.tmp" ./usr/bin/qemu-aarch64
    mv "$QEMU_CACHE.tmp/usr/bin/qemu-aarch64" "$QEMU_CACHE.tmp/qemu-aarch64"
    rm -rf "$QEMU_CACHE.tmp/usr" "$QEMU_CACHE.tmp"/*.deb "$QEMU_CACHE"
    mv "$QEMU_CACHE.tmp" "$QEMU_CACHE"
  fi
  mkdir -p "$(dirname "$QEMU_OUT")"
  cp -f "$QEMU_CACHE/qemu-aarch64" "$QEMU_OUT"
  log "qemu: $("$QEMU_OUT" --version | head -n 1)"

  # The venv's wheels, resolved against the system's numpy (pinned to its version, so pip picks
  # wheels that work with it) and unpacked without it, as edge.deploy does on Trixie.
  numpy_version=$(find "$ROOT/usr/lib/python3/dist-packages" -maxdepth 1 -name 'numpy-*.dist-info' |
    sed -n 's/.*numpy-\(.*\)\.dist-info$/\1/p' | head -n 1)
  [[ -n $numpy_version ]] || { log "no numpy in $ROOT"; exit 1; }
  SITE_STAMP_WANT="trixie wheels: ${TRIXIE_WHEELS[*]} numpy==$numpy_version ${TRIXIE_PLATFORM_ARGS[*]}"
  if [[ -f "$SITE/.binland-site" && "$(cat "$SITE/.binland-site")" == "$SITE_STAMP_WANT" ]]; then
    log "site-packages up to date: $SITE"
  else
    WHEEL_CACHE="$CACHE/wheels-cp313"
    mkdir -p "$WHEEL_CACHE"
    rm -rf "$SITE.dl" "$SITE.tmp"
    want=("${TRIXIE_PLATFORM_ARGS[@]}" "${TRIXIE_WHEELS[@]}" "numpy==$numpy_version")
    if ! $PIP download -q --disable-pip-version-check --no-index --find-links "$WHEEL_CACHE" \
        --dest "$SITE.dl" "${want[@]}" 2>/dev/null; then
      log "downloading cp313 aarch64 wheels into $WHEEL_CACHE"
      $PIP download -q --disable-pip-version-check --dest "$WHEEL_CACHE" "${want[@]}"
      $PIP download -q --disable-pip-version-check --no-index --find-links "$WHEEL_CACHE" \
        --dest "$SITE.dl" "${want[@]}"
    fi
    rm -f "$SITE.dl"/numpy-*.whl
    $PIP install -q --disable-pip-version-check --root-user-action=ignore --no-deps --no-compile \
      --target "$SITE.tmp" "${TRIXIE_PLATFORM_ARGS[@]}" "$SITE.dl"/*.whl
    rm -rf "$SITE.dl"
    echo "$SITE_STAMP_WANT" >"$SITE.tmp/.binland-site"
    rm -rf "$SITE"
    mv "$SITE.tmp" "$SITE"
    log "site-packages ready: $SITE"
  fi
  exit 0
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
