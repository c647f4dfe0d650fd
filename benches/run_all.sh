#!/usr/bin/env bash
# Build the corpus, run the decode benchmarks in the main venv and (Pillow rows only)
# in the Pillow-SIMD venv, write the JSON to benches/.corpus/results/ and print the
# Markdown report (benches/.corpus/results/<date-time>/: one JSON per library, report.md).
#
#   bash benches/run_all.sh                 # everything
#   bash benches/run_all.sh -k imagenet     # extra arguments go to every pytest run
#
# Environment:
#   VENV         main venv with fastprep and the peers (default: <repo>/.venv)
#   VENV_SIMD    Pillow-SIMD venv (default: <repo>/.venv-simd)
#   BUILD_SIMD=1 run benches/setup_pillow_simd.sh first when VENV_SIMD is missing
#   SKIP_SIMD=1  leave the Pillow-SIMD run out
#   FASTPREP_BENCH_SECONDS, FASTPREP_BENCH_{MIN,MAX}_ROUNDS: see benches/conftest.py
#
# On 2 cores the main venv's runs take about 2 minutes and the Pillow-SIMD run under 1.
# The machine should be otherwise idle: a compile in the background halves the numbers.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
VENV="${VENV:-$REPO/.venv}"
VENV_SIMD="${VENV_SIMD:-$REPO/.venv-simd}"
RESULTS="${FASTPREP_BENCH_CORPUS:-$REPO/benches/.corpus}/results"
STAMP="$(date +%Y%m%d-%H%M%S)"

log() { printf '[run_all] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
    log "no venv at $VENV: create it, build fastprep into it (maturin develop --release)"
    log "and install the peers: pip install pillow opencv-python-headless simplejpeg pytest-benchmark"
    exit 1
fi
mkdir -p "$RESULTS"

# 1. Corpus (the main venv's Pillow encodes it; the SIMD run only reads it).
"$VENV/bin/python" benches/corpus.py

PYTEST_ARGS=(-p no:cacheprovider -q --benchmark-sort=name --benchmark-columns=median,rounds)
OUT="$RESULTS/$STAMP"
mkdir -p "$OUT"
jsons=()

# One pytest process per library: glibc's malloc adapts to what a process has done,
# so a library's numbers would otherwise depend on which benchmarks ran before it.
run_lib() {  # venv, test function, JSON name; extra arguments go to pytest
    local python="$1/bin/python" test="$2" name="$3"
    shift 3
    local json="$OUT/$name.json"
    log "$name: $test"
    local rc=0
    "$python" -m pytest "benches/test_decode_bench.py::$test" "${PYTEST_ARGS[@]}" \
        --benchmark-json "$json" "$@" || rc=$?
    case $rc in
        0) if [ -f "$json" ]; then jsons+=("$json"); fi ;;
        5) log "$name: no test selected" ;;
        *) log "$name: pytest failed ($rc)"; exit "$rc" ;;
    esac
}

# 2. Main venv: fastprep and every peer that is installed (absent ones skip).
log "main venv: $("$VENV/bin/python" --version)"
for lib in fastprep pillow opencv simplejpeg torchvision; do
    run_lib "$VENV" "test_$lib" "$lib" "$@"
done

# 3. Pillow-SIMD venv: the Pillow rows only.
if [ "${SKIP_SIMD:-0}" != "1" ]; then
    if [ ! -x "$VENV_SIMD/bin/python" ] && [ "${BUILD_SIMD:-0}" = "1" ]; then
        VENV_SIMD="$VENV_SIMD" bash benches/setup_pillow_simd.sh
    fi
    if [ -x "$VENV_SIMD/bin/python" ]; then
        log "Pillow-SIMD venv: $("$VENV_SIMD/bin/python" -c 'import PIL; print("PIL", PIL.__version__)')"
        run_lib "$VENV_SIMD" test_pillow pillow-simd "$@"
    else
        log "no $VENV_SIMD: run benches/setup_pillow_simd.sh (or BUILD_SIMD=1) for the Pillow-SIMD rows"
    fi
fi

# 4. Report.
log "results: ${jsons[*]}"
echo
"$VENV/bin/python" benches/report.py "${jsons[@]}" | tee "$OUT/report.md"
