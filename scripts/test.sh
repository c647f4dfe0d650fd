#!/usr/bin/env bash
# README command 2 (and CI): set everything up, run the Rust tests, then run
# the Python tests against the release wheel installed in a clean venv, so a
# packaging mistake fails here too.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

# Spark's local mode (the scale-out tests) needs a Java runtime.
if ! command -v java >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing a Java runtime (Spark tests)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless >/dev/null
  else
    echo "test: java not found; the Spark tests will fail" >&2
  fi
fi

# The report test renders report.html in a real headless browser.
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing chromium (headless report test)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "test: chromium not found; the browser test will be skipped" >&2
  fi
fi

# The remote-source tests serve shards over HTTP with nginx on loopback.
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing nginx (HTTP source tests)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null
  else
    echo "test: nginx not found; the HTTP source tests will be skipped" >&2
  fi
fi

echo "== cargo test"
cargo test --quiet

# The parsers of untrusted bytes under libFuzzer, briefly (fuzz/README.md).
echo "== cargo fuzz (${FUZZ_SECONDS:-45}s a target)"
bash scripts/fuzz.sh "${FUZZ_SECONDS:-45}"

echo "== pytest against the installed wheel (fresh .venv-test)"
rm -rf .venv-test
"${PYTHON:-python3}" -m venv .venv-test
wheel=$(ls dist/fastprep-*.whl)
# torch (DataLoader tests), Ray and PySpark (scale-out tests) are optional
# extras of fastprep, installed here so their tests run; PyPI's torch is the
# CUDA build (~3 GB download). Spark's local mode needs Java 17 (java on PATH).
.venv-test/bin/python -m pip install -q "${wheel}[test,torch,ray,spark,remote]" torchvision pydantic
echo "== type check: mypy on the package, stubtest on the extension's stubs"
.venv-test/bin/python -m mypy
(cd tests && ../.venv-test/bin/python -m mypy.stubtest fastprep._core \
  --mypy-config-file ../scripts/stubtest.ini --allowlist ../scripts/stubtest-allowlist.txt)

# Run from tests/ so `import fastprep` can only resolve to the installed wheel.
cd tests
../.venv-test/bin/python -c 'import fastprep, sys; assert "site-packages" in fastprep.__file__, fastprep.__file__'
../.venv-test/bin/python -m pytest -q -p no:cacheprovider "$@" .
