#!/usr/bin/env bash
# Sets up a fresh machine for fastprep: system build tools, the project's
# virtual environment (.venv) and a release build of the extension installed
# into it as a wheel. Safe to re-run; it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# libjpeg-turbo is built from source by turbojpeg-sys: it needs cmake and nasm.
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v nasm >/dev/null || missing+=(nasm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${missing[*]} with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: please install ${missing[*]} (e.g. sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi
command -v cargo >/dev/null || { echo "setup: a Rust toolchain (cargo) is required: https://rustup.rs" >&2; exit 1; }

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# numpy and pyarrow are fastprep's dependencies; matplotlib draws the report's figures.
.venv/bin/python -m pip install -q "maturin>=1.7,<2" numpy pyarrow "matplotlib>=3.7"

# Release wheel (abi3: one wheel serves every CPython >= 3.9), then install it.
rm -rf dist
.venv/bin/maturin build --release --out dist --interpreter .venv/bin/python
.venv/bin/python -m pip install -q --force-reinstall --no-deps dist/fastprep-*.whl
# ...and whatever of its dependencies (click, rich, jinja2...) is still missing.
.venv/bin/python -m pip install -q dist/fastprep-*.whl
echo "setup: fastprep $(.venv/bin/python -c 'import fastprep; print(fastprep.__version__)') installed in .venv"
