#!/usr/bin/env bash
# The whole GPU round in one command, for a lent GPU machine (torch, pybind11, scikit-build-core,
# cmake and ninja installed; no package registry):
#   1. build and install fastrnn with the CUDA kernels, for this GPU's architecture only
#      (FASTRNN_CUDA_ARCHS overrides; one architecture keeps the build to about a minute);
#   2. run every test marked `cuda`, across all test files (junit XML for the counts);
#   3. run the quick CUDA benchmark (bench/run.py --device cuda --quick);
#   4. add the test counts and versions to the benchmark's bench/results/<device>-<date>.json.
# Logs, the junit XML and the result files also go to $OUT when it is set (the device tool
# brings back what is there). Exit status: 0 when the build worked and no test failed.
#
#   tools/gpu-check.sh                 # everything
#   SKIP_BENCH=1 tools/gpu-check.sh    # build and tests only
#   PYTEST_ARGS="-k lstm" tools/gpu-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LOGS=${OUT:-$ROOT/build/gpu-check}
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1
stamp() { echo "[gpu-check $(date +%H:%M:%S)] $*"; }

python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible to torch'" || exit 2
ARCH=${FASTRNN_CUDA_ARCHS:-$(python3 -c "import torch; print('%d%d' % torch.cuda.get_device_capability())")}
stamp "GPU: $(python3 -c 'import torch; print(torch.cuda.get_device_name())'), sm_$ARCH; torch $(python3 -c 'import torch; print(torch.__version__, torch.version.cuda)'); $(nvcc --version 2>/dev/null | tail -1)"

# 1. Build. --no-build-isolation: use the installed build tools (there is no registry to fetch from).
# Installed into its own folder (no clash with a system-managed site-packages), first on the path.
SITE=${FASTRNN_SITE:-/tmp/fastrnn-site}
rm -rf "$SITE"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
stamp "building (FASTRNN_CUDA=ON, archs $ARCH) into $SITE"
start=$(date +%s)
if ! FASTRNN_CUDA=ON FASTRNN_CUDA_ARCHS="$ARCH" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    python3 -m pip install --no-build-isolation --no-deps --no-cache-dir --target "$SITE" -v "$ROOT" \
    >"$LOGS/build.log" 2>&1; then
  tail -40 "$LOGS/build.log"
  stamp "build failed"
  exit 1
fi
stamp "built in $(($(date +%s) - start)) s"
# The installed package, not the source tree, must be the one imported.
(cd /tmp && python3 -c "import fastrnn, json; print(fastrnn.__file__); print(json.dumps(fastrnn.build_info()))") \
  | tee "$LOGS/build_info.txt"

# 2. The CUDA tests of every file. -p no:cacheprovider: the tree may be read-only.
stamp "running the CUDA tests"
# Time limits keep a hang from spending the whole lease (a killed run writes no junit XML and
# counts as failed).
rm -f "$LOGS/junit.xml"
timeout "${TEST_TIMEOUT:-480}" python3 -m pytest -m cuda tests -q -p no:cacheprovider --junitxml="$LOGS/junit.xml" \
  ${PYTEST_ARGS:-} 2>&1 | tee "$LOGS/tests.log" | tail -60
read -r PASSED FAILED SKIPPED < <(python3 - "$LOGS/junit.xml" <<'PY'
import os
import sys

if not os.path.exists(sys.argv[1]):
    print("0 1 0")  # the run was killed or crashed before reporting
    sys.exit()
import xml.etree.ElementTree as ET

root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
count = lambda key: sum(int(s.get(key, 0)) for s in suites)
failed = count("failures") + count("errors")
skipped = count("skipped")
print(count("tests") - failed - skipped, failed, skipped)
PY
)
stamp "tests: ${PASSED:-?} passed, ${FAILED:-?} failed, ${SKIPPED:-?} skipped"

# 3. The benchmark, and 4. the counts and versions added to its result file.
if [ -z "${SKIP_BENCH:-}" ]; then
  stamp "benchmarking"
  marker=$(mktemp)
  timeout "${BENCH_TIMEOUT:-300}" python3 bench/run.py --device cuda --quick 2>&1 | tee "$LOGS/bench.log" | tail -40
  RESULT=$(find bench/results -name '*.json' -newer "$marker" | head -1)
  if [ -n "$RESULT" ]; then
    python3 - "$RESULT" "${PASSED:-0}" "${FAILED:-0}" "${SKIPPED:-0}" <<'PY'
import json
import subprocess
import sys

import torch

import fastrnn

path, passed, failed, skipped = sys.argv[1], *map(int, sys.argv[2:])
with open(path) as f:
    document = json.load(f)
document["tests"] = {"passed": passed, "failed": failed, "skipped": skipped}
def command(*argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True).stdout.strip().splitlines()
    except OSError:
        return []


nvcc = command("nvcc", "--version")
driver = command("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader")
document["versions"] = {"torch": torch.__version__, "torch_cuda": torch.version.cuda,
                        "cudnn": torch.backends.cudnn.version(), "nvcc": nvcc[-1] if nvcc else None,
                        "driver": driver[0] if driver else None, "fastrnn": fastrnn.build_info()}
with open(path, "w") as f:
    json.dump(document, f, indent=1)
print("wrote", path)
PY
    cp "$RESULT" "${RESULT%.json}.md" "$LOGS/" 2>/dev/null
  else
    stamp "the benchmark wrote no result file"
  fi
fi
stamp "done: ${PASSED:-?} passed, ${FAILED:-?} failed, ${SKIPPED:-?} skipped"
[ "${FAILED:-1}" = "0" ]
