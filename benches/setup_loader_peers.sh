#!/usr/bin/env bash
# Virtual environments for the loader benchmark's peers (benches/loader_table.py):
#
#   .venv-dali  NVIDIA DALI (nvidia-dali-cuda130), CPU pipelines only (device_id=None:
#               no GPU and no CUDA driver are needed)
#   .venv-ffcv  FFCV 1.0.2, built from its sdist against the system's libturbojpeg
#               and OpenCV (apt-get install libturbojpeg0-dev libopencv-dev pkg-config),
#               with numba and torch (plain PyPI torch)
#
# Benchmark-only: the test command never runs this, and fastprep is not installed in
# either venv (benches/loader_peers.py needs neither fastprep nor pytest).
# Idempotent: a venv whose peer already imports is left as it is.
#
#   bash benches/setup_loader_peers.sh            # both
#   bash benches/setup_loader_peers.sh dali       # one of them
#
# Environment:
#   VENV_DALI, VENV_FFCV  venvs to create (default: <repo>/.venv-dali, <repo>/.venv-ffcv)
#   PYTHON                interpreter for the venvs (default: python3; FFCV 1.0.2's
#                         setup.py imports distutils, so Python <= 3.11 is safest)
#   DALI_VERSION          nvidia-dali-cuda130 version (default: pinned below)
#   FFCV_VERSION          default 1.0.2
#   FFCV_NUMPY            numpy requirement for the FFCV venv (default: "numpy<2")
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DALI="${VENV_DALI:-$REPO/.venv-dali}"
VENV_FFCV="${VENV_FFCV:-$REPO/.venv-ffcv}"
PYTHON="${PYTHON:-python3}"
# Latest on PyPI when this script was written (`pip index versions nvidia-dali-cuda130`).
DALI_VERSION="${DALI_VERSION:-2.4.0}"
FFCV_VERSION="${FFCV_VERSION:-1.0.2}"
# FFCV 1.0.2 (2023) predates numpy 2; numba picks a release that supports it.
FFCV_NUMPY="${FFCV_NUMPY:-numpy<2}"

log() { printf '[setup_loader_peers] %s\n' "$*" >&2; }

make_venv() {  # path
    if [ ! -x "$1/bin/python" ]; then
        log "creating $1"
        "$PYTHON" -m venv "$1"
        "$1/bin/python" -m pip install -q --upgrade pip
    fi
}

setup_dali() {
    make_venv "$VENV_DALI"
    local py="$VENV_DALI/bin/python"
    local have
    have="$("$py" -c 'import nvidia.dali as d; print(d.__version__)' 2>/dev/null || true)"
    if [ "$have" = "$DALI_VERSION" ]; then
        log "DALI $have already installed in $VENV_DALI"
    else
        log "installing nvidia-dali-cuda130==$DALI_VERSION into $VENV_DALI"
        "$py" -m pip install -q "nvidia-dali-cuda130==$DALI_VERSION" numpy
    fi
    # A CPU-only pipeline (device_id=None) runs here with no GPU: resize, flip and
    # crop_mirror_normalize on an external uint8 image.
    "$py" - <<'EOF'
import numpy as np
import nvidia.dali as dali
import nvidia.dali.fn as fn
import nvidia.dali.types as types


@dali.pipeline_def(batch_size=2, num_threads=1, device_id=None)
def pipe():
    image = fn.external_source(
        source=lambda: [np.full((375, 500, 3), 128, np.uint8)] * 2, layout="HWC"
    )
    image = fn.resize(image, size=(224, 224))
    return fn.crop_mirror_normalize(
        image, dtype=types.UINT8, output_layout="HWC", mirror=fn.random.coin_flip()
    )


p = pipe()
p.build()
(out,) = p.run()
assert np.asarray(out.as_tensor()).shape == (2, 224, 224, 3)
print(f"DALI {dali.__version__}: CPU pipeline ok")
EOF
    log "ok: $VENV_DALI"
}

setup_ffcv() {
    # 1. System libraries that FFCV's C extension is built against.
    local need=()
    have_deb() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
    if command -v dpkg-query >/dev/null 2>&1; then
        for pkg in libturbojpeg0-dev libopencv-dev pkg-config; do
            have_deb "$pkg" || need+=("$pkg")
        done
        command -v c++ >/dev/null 2>&1 || need+=(build-essential)
        if ((${#need[@]})); then
            log "installing ${need[*]}"
            local sudo=""
            [ "$(id -u)" -eq 0 ] || sudo="sudo"
            $sudo apt-get update -qq
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
        fi
    else
        log "not a Debian-like system: install libturbojpeg and OpenCV (with pkg-config files) yourself"
    fi
    pkg-config --exists libturbojpeg || { log "pkg-config finds no libturbojpeg"; exit 1; }
    pkg-config --exists opencv4 || pkg-config --exists opencv ||
        { log "pkg-config finds no opencv4"; exit 1; }

    # 2. The venv.
    make_venv "$VENV_FFCV"
    local py="$VENV_FFCV/bin/python"
    local have
    have="$("$py" -c 'import importlib.metadata as m; print(m.version("ffcv"))' 2>/dev/null || true)"
    if [ "$have" = "$FFCV_VERSION" ] && "$py" -c 'import ffcv.loader' 2>/dev/null; then
        log "FFCV $have already installed in $VENV_FFCV"
    else
        # FFCV's own requirements, but OpenCV's headless wheel instead of
        # opencv-python (same cv2 module, no libGL; FFCV's pixel path uses the
        # system OpenCV its extension links, cv2 only writes 'jpg' fields), and torch,
        # which FFCV imports without declaring it.
        log "installing FFCV's dependencies into $VENV_FFCV (torch is a large download)"
        "$py" -m pip install -q "$FFCV_NUMPY" numba torch opencv-python-headless pillow \
            terminaltables pytorch_pfn_extras fastargs assertpy tqdm psutil
        log "building ffcv==$FFCV_VERSION from its sdist"
        "$py" -m pip install --no-deps --no-binary ffcv "ffcv==$FFCV_VERSION"
    fi
    "$py" - <<'EOF'
import importlib.metadata as m

import numba
import numpy
import torch
from ffcv.fields import IntField, RGBImageField  # noqa: F401
from ffcv.fields.rgb_image import RandomResizedCropRGBImageDecoder  # noqa: F401
from ffcv.libffcv import imdecode  # noqa: F401  (the C extension: turbojpeg + OpenCV)
from ffcv.loader import Loader, OrderOption  # noqa: F401

print(
    f"ffcv {m.version('ffcv')}, numba {numba.__version__}, numpy {numpy.__version__}, "
    f"torch {torch.__version__}: imports ok"
)
EOF
    log "ok: $VENV_FFCV"
}

targets=("$@")
((${#targets[@]})) || targets=(dali ffcv)
for target in "${targets[@]}"; do
    case "$target" in
        dali) setup_dali ;;
        ffcv) setup_ffcv ;;
        *) log "unknown peer $target (dali or ffcv)"; exit 2 ;;
    esac
done
