#!/usr/bin/env bash
# README command 2 (and CI): set everything up, run the Rust tests, then run
# the Python tests against the release wheel installed in a clean venv, so a
# packaging mistake fails here too.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

echo "== cargo test"
cargo test --quiet

echo "== pytest against the installed wheel (fresh .venv-test)"
rm -rf .venv-test
"${PYTHON:-python3}" -m venv .venv-test
wheel=$(ls dist/fastprep-*.whl)
.venv-test/bin/python -m pip install -q "${wheel}[test]"
# Run from tests/ so `import fastprep` can only resolve to the installed wheel.
cd tests
../.venv-test/bin/python -c 'import fastprep, sys; assert "site-packages" in fastprep.__file__, fastprep.__file__'
../.venv-test/bin/python -m pytest -q -p no:cacheprovider "$@" .
