#!/usr/bin/env bash
# The whole GPU measurement in one device call of at most 6 minutes: a lent GPU machine gives 15
# minutes in all, its start (1-2 minutes) included, and this leaves time for one rerun. Stages:
#   install   build and install with the CUDA module; if that fails, without it (FASTDQN_CUDA=OFF),
#             saying so
#   test_gpu  the tests marked gpu
#   micro     bench/gpu_micro.py --quick, without torch.compile
#   train     TRAIN_SECONDS (150) of Pong training at the defaults, on CUDA
#   pqn       only with PQN=1: PQN_SECONDS (60) of `--preset pqn-pong` (PQN) on CUDA; its time comes
#             out of train's (TRAIN_SECONDS defaults to 75 then), so the limits' sum stays 340 s
#   report    bench/gpu_report.py: the stages' JSON merged, the run's summary and reward curve
# Each stage has a time limit (LIMIT below; they add up to BUDGET_S, 340 s, and no stage runs past
# it) and writes $OUT/<stage>.json as soon as it ends, so a timeout keeps what ran. $OUT ends with
# 7 files (8 with PQN=1: pqn.json; a device call brings back at most 8): install.json, test_gpu.json, micro.json,
# train.json, report.json, reward_curve.png and logs.tar.gz (the stages' logs, nvidia-smi, the
# junit XML, the run's metrics.jsonl and config).
#
# From the project root, after ../shared/gpu/stage.sh (copies the ale-py/gymnasium wheels into
# .whl/), as one device call carrying .whl, with timeout_s 360:
#     bash bench/gpu_pong.sh
# Knobs (environment): STAGES (default install,test_gpu,micro,train,report; PQN=1 adds pqn), TRAIN_SECONDS,
# TRAIN_ARGS (`fastdqn train` flags, default "--device cuda"), CUDA_ARCHS (90), MICRO_ARGS
# ("--quick --no-compile"), PYTHON (python3), BUDGET_S (340), LIMIT_SCALE (limits and budget x N),
# PQN (0), PQN_SECONDS, PQN_ARGS (default "--preset pqn-pong --device cuda").
# PLAN=1 prints the limits as JSON and exits (tests/test_gpu_script.py checks their sum).
#
# DRY_RUN=1 runs every stage on a CPU machine at tiny sizes (the test suite does, so the script
# cannot rot before a GPU is lent): install checks the installed package instead of building,
# micro only imports its modules, train runs a few hundred CPU frames.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$REPO/gpu-out}
DRY_RUN=${DRY_RUN:-0}
PQN=${PQN:-0}
if [[ $PQN == 1 ]]; then
  STAGES=${STAGES:-install,test_gpu,micro,train,pqn,report}
  PQN_SECONDS=${PQN_SECONDS:-60}
  TRAIN_SECONDS=${TRAIN_SECONDS:-$(( 150 - PQN_SECONDS - 15 ))}  # train + pqn: the 165 s train had alone
else
  STAGES=${STAGES:-install,test_gpu,micro,train,report}
  PQN_SECONDS=${PQN_SECONDS:-0}
fi
if [[ $DRY_RUN == 1 ]]; then
  PQN_ARGS=${PQN_ARGS:---preset pqn-pong --device cpu --num-envs 2 --rollout-steps 8 --minibatches 2 --frames 48}
  TRAIN_SECONDS=${TRAIN_SECONDS:-60}
  TRAIN_ARGS=${TRAIN_ARGS:---device cpu --num-envs 2 --frames 300 --replay-start 260 --replay-size 1000 --replay-ratio 0.25}
  MICRO_ARGS=${MICRO_ARGS:---dry-run}
  LIMIT_SCALE=${LIMIT_SCALE:-10}  # the limits fit a GPU machine; a busy CPU machine is slower
else
  PQN_ARGS=${PQN_ARGS:---preset pqn-pong --device cuda}
  TRAIN_SECONDS=${TRAIN_SECONDS:-150}
  TRAIN_ARGS=${TRAIN_ARGS:---device cuda}
  MICRO_ARGS=${MICRO_ARGS:---quick --no-compile}  # compile alone would take minutes
  LIMIT_SCALE=${LIMIT_SCALE:-1}
fi
CUDA_ARCHS=${CUDA_ARCHS:-90}
PY=${PYTHON:-python3}
BUDGET_S=$(( ${BUDGET_S:-340} * LIMIT_SCALE ))
# Seconds per stage (x LIMIT_SCALE). install: a failed CUDA build and the fallback together (the
# fallback reuses the _core objects the first build made). train: SIGINT at TRAIN_SECONDS, then
# the trainer writes last.pt and exits.
ORDER=(install test_gpu micro train pqn report)
declare -A LIMIT=([install]=90 [test_gpu]=40 [micro]=35 [train]=$(( TRAIN_SECONDS + 15 ))
                  [pqn]=$(( PQN_SECONDS + 15 )) [report]=10)
declare -A RC SECS

has() { [[ ",$STAGES," == *",$1,"* ]]; }
for s in ${STAGES//,/ }; do
  [[ -v LIMIT[$s] ]] || { echo "gpu_pong.sh: unknown stage '$s' in STAGES (known: ${ORDER[*]})" >&2; exit 2; }
done
PLANNED=0; PLAN_JSON=""
for s in "${ORDER[@]}"; do
  has "$s" || continue
  PLANNED=$(( PLANNED + LIMIT[$s] * LIMIT_SCALE )); PLAN_JSON+="\"$s\": $(( LIMIT[$s] * LIMIT_SCALE )), "
done
if [[ ${PLAN:-0} == 1 ]]; then
  echo "{\"limits\": {${PLAN_JSON%, }}, \"sum_s\": $PLANNED, \"budget_s\": $BUDGET_S," \
    "\"train_seconds\": $TRAIN_SECONDS, \"pqn_seconds\": $PQN_SECONDS}"
  exit 0
fi
(( PLANNED > BUDGET_S )) \
  && echo "warning: the stage limits add up to ${PLANNED}s, over the ${BUDGET_S}s budget: the last stages get less"

mkdir -p "$OUT" || exit 1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fastdqn-gpu.XXXXXX") || exit 1  # logs and the run: only a tarball goes to $OUT
mkdir -p "$WORK/logs"
export PYTHONPATH=$WORK/site${PYTHONPATH:+:$PYTHONPATH}  # ale-py and gymnasium, from the wheels
T_START=$(date +%s)
elapsed() { echo $(( $(date +%s) - T_START )); }

# $OUT/logs.tar.gz: everything in $WORK but checkpoints and replays, replaced whole.
pack() {
  local items=(logs); [[ -d $WORK/train ]] && items+=(train); [[ -d $WORK/pqn ]] && items+=(pqn)
  tar -czf "$OUT/logs.tar.gz.tmp" --exclude='*.pt' --exclude='*.npz' -C "$WORK" "${items[@]}" \
    && mv "$OUT/logs.tar.gz.tmp" "$OUT/logs.tar.gz"
}
# stage NAME CMD...: run CMD under NAME's limit, cut to what the budget has left (less the report's
# share, so the report always runs), log to logs/NAME.log, then add its exit code and times to
# $OUT/NAME.json and repack the logs. The limit sends SIGINT, like a Ctrl-C: pytest still writes its
# junit XML, the trainer its last.pt.
stage() {
  local name=$1 limit=$(( LIMIT[$1] * LIMIT_SCALE )) left t0; shift
  left=$(( BUDGET_S - $(elapsed) ))
  [[ $name != report ]] && left=$(( left - LIMIT[report] * LIMIT_SCALE ))
  (( limit > left )) && limit=$left
  t0=$(date +%s)
  if (( limit < 5 )); then
    echo "== $name: skipped, ${left}s of the budget left" | tee "$WORK/logs/$name.log"
    RC[$name]=124 limit=0
  else
    echo "== [$(elapsed)s] $name (limit ${limit}s)"
    timeout -s INT -k 5 "$limit" "$@" >"$WORK/logs/$name.log" 2>&1
    RC[$name]=$?
    tail -n 15 "$WORK/logs/$name.log"
  fi
  SECS[$name]=$(( $(date +%s) - t0 ))
  echo "== $name: rc ${RC[$name]} in ${SECS[$name]}s"
  "$PY" "$REPO/bench/gpu_report.py" stage "$OUT" "$name" "${RC[$name]}" "${SECS[$name]}" "$limit"
  pack
}

# The install stage, in a child bash (so that timeout can run it).
install_fastdqn() {
  local how=dry_run d
  if [[ $DRY_RUN != 1 ]]; then  # the dry run checks the package the suite installed instead
    for d in "$REPO/.whl" "$REPO/../shared/gpu/wheels"; do  # the GPU machine reaches no registry
      if compgen -G "$d/*.whl" >/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --target "$WORK/site" "$d"/*.whl || echo "wheel install failed"
        break
      fi
    done
    how=cuda
    if ! FASTDQN_CUDA=ON pip_install; then
      how=without_cuda
      echo "== the CUDA build failed (above): installing without the CUDA module (FASTDQN_CUDA=OFF)"
      FASTDQN_CUDA=OFF pip_install || return 1
    fi
  fi
  cd "$WORK" && "$PY" "$REPO/bench/gpu_report.py" installed "$OUT/install.json" --how "$how" \
    && "$PY" -m fastdqn.cli info
}
pip_install() {
  (cd "$REPO" && CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$PY" -m pip install -v --no-build-isolation --no-deps \
    -C cmake.define.FASTDQN_CUDA_ARCHS="$CUDA_ARCHS" .)
}
export -f install_fastdqn pip_install
export REPO OUT WORK PY DRY_RUN CUDA_ARCHS

nvidia-smi >"$WORK/logs/nvidia-smi.txt" 2>&1
# Everything runs outside the source tree, so `import fastdqn` finds the installed copy.
cd "$WORK" || exit 1

if has install; then
  stage install bash -c install_fastdqn
  grep -q '"how": "without_cuda"' "$OUT/install.json" 2>/dev/null \
    && echo "!! installed WITHOUT the CUDA module: the CUDA build failed, see logs/install.log"
fi
if has test_gpu; then
  # -v: each test's result is in the log as it ends; --durations: what to size the next run by.
  stage test_gpu "$PY" -m pytest "$REPO/tests" -m gpu -v -rfEs --durations=15 -p no:cacheprovider \
    --junitxml="$WORK/logs/pytest_gpu.xml"
  "$PY" "$REPO/bench/gpu_report.py" junit "$WORK/logs/pytest_gpu.xml" "$OUT/test_gpu.json"
fi
if has micro; then
  # shellcheck disable=SC2086
  stage micro "$PY" "$REPO/bench/gpu_micro.py" --out "$OUT/micro.json" $MICRO_ARGS
fi
if has train; then
  # SIGINT ends the run like a Ctrl-C (last.pt, metrics), 15 s before the stage's own limit;
  # metrics.jsonl is line-buffered, so the curve survives even a hard kill.
  secs=$(( LIMIT[train] * LIMIT_SCALE - 15 )); (( secs > TRAIN_SECONDS )) && secs=$TRAIN_SECONDS
  left=$(( BUDGET_S - $(elapsed) - (LIMIT[report] + 15) * LIMIT_SCALE )); (( secs > left )) && secs=$left
  (( secs < 1 )) && secs=1  # timeout 0 would mean no limit
  # shellcheck disable=SC2086
  stage train timeout -s INT -k 10 "$secs" "$PY" -m fastdqn.cli train --out "$WORK/train" --no-tensorboard \
    --no-progress $TRAIN_ARGS
fi
if has pqn; then
  # the train stage's deadline rule, for PQN's Pong (config.json and metrics.jsonl land in logs.tar.gz)
  secs=$(( LIMIT[pqn] * LIMIT_SCALE - 15 )); (( secs > PQN_SECONDS )) && secs=$PQN_SECONDS
  left=$(( BUDGET_S - $(elapsed) - (LIMIT[report] + 15) * LIMIT_SCALE )); (( secs > left )) && secs=$left
  (( secs < 1 )) && secs=1
  # shellcheck disable=SC2086
  stage pqn timeout -s INT -k 10 "$secs" "$PY" -m fastdqn.cli train --out "$WORK/pqn" --no-tensorboard \
    --no-progress $PQN_ARGS
fi
if has report; then
  stage report "$PY" "$REPO/bench/gpu_report.py" report "$OUT" --run "$WORK/train" --wall "${SECS[train]:-0}" \
    ${SECS[pqn]:+--pqn-run "$WORK/pqn" --pqn-wall "${SECS[pqn]}"} \
    --png "$OUT/reward_curve.png" --nvidia-smi "$WORK/logs/nvidia-smi.txt" \
    --title "fastdqn Pong: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | sed -n 1p); $TRAIN_ARGS"
fi
echo "== done in $(elapsed)s (budget ${BUDGET_S}s); results in $OUT:" $(ls "$OUT")
