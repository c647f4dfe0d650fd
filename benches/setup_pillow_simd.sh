#!/usr/bin/env bash
# Build Pillow-SIMD (the design card's reference peer) from source into its own
# virtual environment, /work/main/.venv-simd by default.
#
# Pillow-SIMD installs as the `PIL` package and so replaces Pillow: it can't share
# the main venv with the Pillow rows it's compared against. After this script,
# run the same benchmark file under that venv; only the Pillow rows run there
# (fastprep, OpenCV, simplejpeg and torchvision are absent and skip):
#
#   .venv-simd/bin/python -m pytest benches/test_decode_bench.py -k pillow
#
# Environment:
#   VENV_SIMD            venv to create (default: <repo>/.venv-simd)
#   PYTHON               interpreter for the venv (default: python3)
#   PILLOW_SIMD_VERSION  version to build (default: pinned below; "latest" asks PyPI
#                        with `pip index versions pillow-simd`)
#   SIMD_CFLAGS          extra compiler flags (default: -mavx2, as pillow-simd's README says)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_SIMD="${VENV_SIMD:-$REPO/.venv-simd}"
PYTHON="${PYTHON:-python3}"
# Latest on PyPI when this script was written (`pip index versions pillow-simd`).
PILLOW_SIMD_VERSION="${PILLOW_SIMD_VERSION:-12.1.1.post0}"
SIMD_CFLAGS="${SIMD_CFLAGS:--mavx2}"

log() { printf '[setup_pillow_simd] %s\n' "$*" >&2; }

# 1. Build dependencies (Debian/Ubuntu). libjpeg-turbo is what makes JPEG decode fast.
need_pkgs=()
have_deb() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
if command -v dpkg-query >/dev/null 2>&1; then
    if ! have_deb libjpeg62-turbo-dev && ! have_deb libjpeg-dev && ! have_deb libjpeg-turbo8-dev; then
        if apt-cache show libjpeg62-turbo-dev >/dev/null 2>&1; then
            need_pkgs+=(libjpeg62-turbo-dev)
        else
            need_pkgs+=(libjpeg-dev)
        fi
    fi
    for pkg in zlib1g-dev libpng-dev libwebp-dev; do
        have_deb "$pkg" || need_pkgs+=("$pkg")
    done
    command -v cc >/dev/null 2>&1 || need_pkgs+=(build-essential)
    if ((${#need_pkgs[@]})); then
        log "installing build deps: ${need_pkgs[*]}"
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
    else
        log "build deps already installed"
    fi
else
    log "not a Debian-like system: install libjpeg(-turbo), zlib, libpng and libwebp headers yourself"
fi

# 2. The venv.
if [ ! -x "$VENV_SIMD/bin/python" ]; then
    log "creating $VENV_SIMD"
    "$PYTHON" -m venv "$VENV_SIMD"
fi
PY="$VENV_SIMD/bin/python"
"$PY" -m pip install -q --upgrade pip

if [ "$PILLOW_SIMD_VERSION" = "latest" ]; then
    PILLOW_SIMD_VERSION="$("$PY" -m pip index versions pillow-simd 2>/dev/null \
        | sed -n 's/^pillow-simd (\(.*\))$/\1/p')"
    [ -n "$PILLOW_SIMD_VERSION" ] || { log "could not ask PyPI for pillow-simd's versions"; exit 1; }
fi

# 3. Pillow-SIMD from source. A plain Pillow must not be there: both are `PIL`.
if "$PY" -m pip show pillow >/dev/null 2>&1; then
    log "removing Pillow from $VENV_SIMD (it would shadow Pillow-SIMD)"
    "$PY" -m pip uninstall -y -q pillow
fi
installed="$("$PY" -c 'import PIL; print(PIL.__version__)' 2>/dev/null || true)"
if [ "$installed" = "$PILLOW_SIMD_VERSION" ]; then
    log "pillow-simd $installed already installed"
else
    log "building pillow-simd==$PILLOW_SIMD_VERSION with CC=\"cc $SIMD_CFLAGS\" (takes a few minutes)"
    # --no-binary for pillow-simd itself (it ships sdists only, and a wheel from
    # the cache might have been built without AVX2); its build backend's own
    # requirements may come as wheels.
    CC="cc $SIMD_CFLAGS" "$PY" -m pip install --no-cache-dir --no-binary pillow-simd \
        "pillow-simd==$PILLOW_SIMD_VERSION"
fi

# 4. The benchmark harness. None of these depend on Pillow.
"$PY" -m pip install -q numpy pytest pytest-benchmark
if "$PY" -m pip show pillow >/dev/null 2>&1; then
    log "error: something pulled in Pillow next to Pillow-SIMD"
    exit 1
fi

"$PY" - <<'EOF'
import PIL
from PIL import Image, features

version = PIL.__version__
print(f"PIL {version} ({'Pillow-SIMD' if '.post' in version else 'Pillow'}) from {PIL.__file__}")
print(f"libjpeg-turbo: {features.version_feature('libjpeg_turbo')}")
assert ".post" in version, "this is not Pillow-SIMD"
assert features.check("jpg"), "built without JPEG support"
im = Image.new("RGB", (640, 480), (10, 200, 30)).resize((224, 224), Image.BILINEAR)
assert im.size == (224, 224)
EOF
log "ok: $VENV_SIMD"
