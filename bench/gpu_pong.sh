#!/usr/bin/env bash
# The whole GPU measurement of issue 4 in one command (< 10 minutes on one H100/H200):
# build + install with the CUDA module, GPU tests, micro-benchmarks, a timed Pong training run,
# and a summary. Results go under $OUT: results.json (everything), micro.json, train_summary.json,
# reward_curve.png, pytest_gpu.txt, logs/*.log.
#
# From the project root, after ../shared/gpu/stage.sh (copies the ale-py/gymnasium wheels into
# .whl/), as one device call carrying .whl:
#     bash bench/gpu_pong.sh
# Knobs (environment): STAGES (default install,test,micro,bench,train), TRAIN_SECONDS (300),
# TRAIN_ARGS (extra `fastdqn train` flags, default "--num-envs 8"), CUDA_ARCHS (90),
# MICRO_ARGS (e.g. "--quick --no-compile" to save ~1-2 minutes), BENCH_ARGS ("--quick"),
# PYTHON (the interpreter, default python3 from PATH), LIMIT_SCALE (stage time limits x N; dry run 10).
#
# DRY_RUN=1 runs every stage on a CPU machine at tiny sizes, a few seconds each (the test suite
# does, tests/test_gpu_script.py, so the script cannot rot before a GPU is lent): install checks
# the installed package instead of building, micro only imports its modules, bench runs --tiny,
# train runs a few hundred CPU frames.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$REPO/gpu-out}
DRY_RUN=${DRY_RUN:-0}
STAGES=${STAGES:-install,test,micro,bench,train}
if [[ $DRY_RUN == 1 ]]; then
  TRAIN_SECONDS=${TRAIN_SECONDS:-60}
  TRAIN_ARGS=${TRAIN_ARGS:---device cpu --num-envs 2 --frames 400 --replay-start 200 --replay-size 1000 --replay-ratio 0.25}
  MICRO_ARGS=${MICRO_ARGS:---dry-run}
  BENCH_ARGS=${BENCH_ARGS:---tiny --rounds 1}
  LIMIT_SCALE=${LIMIT_SCALE:-10}  # the limits guard a GPU's 10 minutes; a busy CPU machine is slower
else
  TRAIN_SECONDS=${TRAIN_SECONDS:-300}
  TRAIN_ARGS=${TRAIN_ARGS:---device cuda --num-envs 8}
  MICRO_ARGS=${MICRO_ARGS:-}
  BENCH_ARGS=${BENCH_ARGS:---quick}
  LIMIT_SCALE=${LIMIT_SCALE:-1}
fi
CUDA_ARCHS=${CUDA_ARCHS:-90}
PY=${PYTHON:-python3}
mkdir -p "$OUT/logs"
T_START=$(date +%s)
declare -A RC SECS

has() { [[ ",$STAGES," == *",$1,"* ]]; }
elapsed() { echo $(( $(date +%s) - T_START )); }
# stage NAME TIMEOUT CMD...: run with a time limit, log to $OUT/logs/NAME.log, remember rc and time.
stage() {
  local name=$1 limit=$(( $2 * LIMIT_SCALE )); shift 2
  local t0; t0=$(date +%s)
  echo "== [$(elapsed)s] $name (limit ${limit}s)"
  timeout -k 20 "$limit" "$@" >"$OUT/logs/$name.log" 2>&1
  RC[$name]=$?
  SECS[$name]=$(( $(date +%s) - t0 ))
  tail -n 15 "$OUT/logs/$name.log"
  echo "== $name: rc ${RC[$name]} in ${SECS[$name]}s"
}

# ale-py and gymnasium are not installed on the GPU machine and it has no registry access.
WHEELS=""
for d in "$REPO/.whl" "$REPO/../shared/gpu/wheels"; do
  if compgen -G "$d/*.whl" >/dev/null; then WHEELS=$d; break; fi
done
if [[ -n $WHEELS ]]; then
  "$PY" -m pip install -q --no-index --no-deps --target /tmp/fastdqn-site "$WHEELS"/*.whl \
    >"$OUT/logs/wheels.log" 2>&1 || echo "wheel install failed: see logs/wheels.log"
  export PYTHONPATH=/tmp/fastdqn-site${PYTHONPATH:+:$PYTHONPATH}
else
  echo "no .whl/ (run ../shared/gpu/stage.sh and carry .whl): ale-py/gymnasium may be missing"
fi
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1

if has install; then
  if [[ $DRY_RUN == 1 ]]; then  # no build: the package the suite installed must import with its core
    cd /tmp || exit 1
    stage install 60 "$PY" -c "import fastdqn._native as n; n.core(); print('installed', n.__file__)"
  else
    cd "$REPO" || exit 1
    FASTDQN_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) stage install 240 \
      "$PY" -m pip install -v --no-build-isolation --no-deps \
      -C cmake.define.FASTDQN_CUDA_ARCHS="$CUDA_ARCHS" "$REPO"
  fi
fi
# Run everything else outside the source tree so `import fastdqn` finds the installed copy
# (with its compiled modules), not the bare sources.
cd /tmp || exit 1
"$PY" -c "import fastdqn.frames.cuda as c, torch; print('fastdqn.frames.cuda.available():', c.available(), torch.cuda.get_device_name(0), c.unavailable_reason())" \
  >"$OUT/logs/info.log" 2>&1
"$PY" -m fastdqn.cli info >>"$OUT/logs/info.log" 2>&1
cat "$OUT/logs/info.log"

if has test; then
  stage test_gpu 180 "$PY" -m pytest "$REPO/tests" -m gpu -q -rs -p no:cacheprovider \
    --junitxml="$OUT/pytest_gpu.xml"
  cp "$OUT/logs/test_gpu.log" "$OUT/pytest_gpu.txt"
  stage test_cuda_cpu 120 "$PY" -m pytest "$REPO/tests/test_cuda.py" "$REPO/tests/test_graphed.py" \
    -m "not gpu" -q -p no:cacheprovider
fi

if has micro; then
  # shellcheck disable=SC2086
  stage micro 200 "$PY" "$REPO/bench/gpu_micro.py" --out "$OUT/micro.json" $MICRO_ARGS
fi

if has bench; then
  # The env path (emulators -> replay) and fastdqn train's loop overlapped vs not, as ratio tables.
  # shellcheck disable=SC2086
  stage bench 150 "$PY" -m fastdqn.cli bench --only env,train $BENCH_ARGS --json "$OUT/bench.json" \
    --markdown "$OUT/bench.md" --quiet
fi

if has train; then
  # Whatever is left of the 10-minute device limit, minus ~80 s for shutdown, report, transfers.
  left=$(( 520 - $(elapsed) ))
  [[ $DRY_RUN != 1 ]] && (( TRAIN_SECONDS > left )) && TRAIN_SECONDS=$left  # dry run: --frames ends it
  if (( TRAIN_SECONDS < 30 )); then
    echo "no time left for training (${left}s)"
  else
    # SIGINT first: the trainer then writes last.pt and metrics like a Ctrl-C; metrics.jsonl is
    # line-buffered, so the curve survives even a hard kill.
    # shellcheck disable=SC2086
    stage train $(( TRAIN_SECONDS + 30 )) timeout -s INT -k 20 "$TRAIN_SECONDS" "$PY" -m fastdqn.cli train \
      --out "$OUT/train" --no-tensorboard --no-progress $TRAIN_ARGS
    stage report 60 "$PY" "$REPO/bench/gpu_report.py" "$OUT/train" --wall "${SECS[train]}" \
      --title "fastdqn Pong: $(nvidia-smi --query-gpu=name --format=csv,noheader | sed -n 1p); $TRAIN_ARGS" \
      --out "$OUT/train_summary.json" --png "$OUT/reward_curve.png"
  fi
fi

# One JSON with everything: stage exit codes and times, micro-benchmarks, training summary.
{
  echo "{"
  for k in "${!RC[@]}"; do echo "\"rc_$k\": ${RC[$k]}, \"seconds_$k\": ${SECS[$k]},"; done
  echo "\"total_seconds\": $(elapsed), \"train_args\": \"$TRAIN_ARGS\", \"cuda_archs\": \"$CUDA_ARCHS\", \"dry_run\": $DRY_RUN}"
} >"$OUT/stages.json"
"$PY" - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
res = {"stages": json.load(open(os.path.join(out, "stages.json")))}
for name in ("micro", "train_summary", "bench"):
    p = os.path.join(out, name + ".json")
    if os.path.exists(p):
        res[name] = json.load(open(p))
p = os.path.join(out, "nvidia-smi.txt")
res["nvidia_smi_head"] = open(p).read().splitlines()[:12] if os.path.exists(p) else None
json.dump(res, open(os.path.join(out, "results.json"), "w"), indent=2)
print(json.dumps({k: v for k, v in res.items() if k != "nvidia_smi_head"}, indent=1)[:6000])
EOF
echo "== done in $(elapsed)s; results in $OUT"
