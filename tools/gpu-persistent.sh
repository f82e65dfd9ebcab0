#!/usr/bin/env bash
# The first GPU round of the persistent CUDA recurrence (issue 6), in one command on a lent GPU
# machine: build and run its tests (tools/gpu-check.sh, persistent tests only), then the existing
# CUDA RNN tests with the persistent path on (the default) and off (forward and backward), then its
# benchmark (inference, then training in float32). Logs go to $OUT when set (else
# build/gpu-check). Each stage has its own time limit.
#
#   tools/gpu-persistent.sh
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS=${OUT:-$PWD/build/gpu-check}
mkdir -p "$LOGS"
export FASTRNN_SITE=${FASTRNN_SITE:-/tmp/fastrnn-site}
stamp() { echo "[gpu-persistent $(date +%H:%M:%S)] $*"; }

SKIP_BENCH=1 TEST_TIMEOUT=240 PYTEST_ARGS="-k persistent" tools/gpu-check.sh
status=$?
[ -f "$FASTRNN_SITE/fastrnn/__init__.py" ] || { stamp "no build"; exit 1; }
export PYTHONPATH="$FASTRNN_SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
for mode in 1 0; do
  stamp "tests/test_cuda_rnn.py with FASTRNN_CUDA_PERSISTENT=$mode"
  FASTRNN_CUDA_PERSISTENT=$mode timeout 180 python3 -m pytest -m cuda tests/test_cuda_rnn.py -q -p no:cacheprovider \
    2>&1 | tee "$LOGS/test_cuda_rnn_persistent$mode.log" | tail -15
  [ "${PIPESTATUS[0]}" = "0" ] || status=1
done
stamp "bench/cuda_persistent.py"
timeout 180 python3 bench/cuda_persistent.py --repeats 10 2>&1 | tee "$LOGS/cuda_persistent_bench.log"
# Forward + backward (the persistent backward), float32 only, to stay within one short round.
stamp "bench/cuda_persistent.py --training"
timeout 120 python3 bench/cuda_persistent.py --training --dtypes float32 --repeats 5 2>&1 |
  tee "$LOGS/cuda_persistent_bench_training.log"
stamp "done (status $status)"
exit $status
