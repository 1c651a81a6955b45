#!/usr/bin/env bash
# GPU checks for aeops on a CUDA machine, in one command (run from the repo root):
#   1. the GPU and torch's view of it
#   2. benchmarks/training_speed.py (Lightning vs a plain loop; CPU and GPU figures)
#   3. prepare + train with train.accelerator gpu (MNIST if present, else digits), MLflow on sqlite
#   4. tune with tune.accelerator gpu, one trial process (n_workers 1)
#   5. the NaN stop (train.lr 1e12) under strategy ddp on one GPU: torchrun, then plain python
# No DVC: the stages' entry points (pipelines/*.py) run in scratch folders with their own params.yaml.
# Each step has its own timeout and a failing step does not stop the next; everything is tee'd into
# $OUT/log.txt and the result files are copied into $OUT.
#
# Environment (all optional):
#   OUT=/tmp/aeops_gpu_check  where log.txt and results go
#   PY=python3                the interpreter (with torch + lightning); "python3 -S" works too
#   ACCEL=gpu                 accelerator for steps 3-5 (cpu: a dry run of the same logic on a CPU machine)
#   WHEELS=.whl               folder of wheels for packages missing from the machine (mlflow-skinny, optuna,
#                             pydantic, sqlalchemy, ...); installed with pip --target /tmp/site when present
#   SPEED_ROWS=20000 SPEED_REPEATS=5   training_speed.py sizes
#   TRAIN_ROWS=20000 TRAIN_EPOCHS=5 TUNE_TRIALS=4 TUNE_EPOCHS=3
# MNIST: shared/datasets/mnist inside the checkout or ../shared/datasets/mnist beside it (IDX .gz files);
# the former is copied to the latter for training_speed.py, which looks only there.
set -u
ROOT=$(pwd)
OUT=${OUT:-/tmp/aeops_gpu_check}
PY=${PY:-python3}
ACCEL=${ACCEL:-gpu}
WHEELS=${WHEELS:-.whl}
SPEED_ROWS=${SPEED_ROWS:-20000}
SPEED_REPEATS=${SPEED_REPEATS:-5}
TRAIN_ROWS=${TRAIN_ROWS:-20000}
TRAIN_EPOCHS=${TRAIN_EPOCHS:-5}
TUNE_TRIALS=${TUNE_TRIALS:-4}
TUNE_EPOCHS=${TUNE_EPOCHS:-3}
WORK=${WORK:-$(mktemp -d /tmp/aeops_gpu_check.XXXXXX)}
export PYTHONUNBUFFERED=1
unset MLFLOW_TRACKING_URI AEOPS_CAP
mkdir -p "$OUT"

step() { echo; echo "=== $* ($(date +%T))"; }

main() {
  step "0. environment: wheels, data"
  if [ -d "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    timeout 90 $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$WHEELS"/*.whl || echo "STEP FAILED: wheel install"
    export PYTHONPATH=/tmp/site:$ROOT/src${PYTHONPATH:+:$PYTHONPATH}
  else
    export PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH}
  fi
  MNIST=""
  if [ -d "$ROOT/shared/datasets/mnist" ]; then
    MNIST=$ROOT/shared/datasets/mnist
    if [ ! -e "$ROOT/../shared/datasets/mnist" ]; then
      mkdir -p "$ROOT/../shared/datasets" && cp -r "$MNIST" "$ROOT/../shared/datasets/" || echo "STEP FAILED: MNIST copy"
    fi
  elif [ -d "$ROOT/../shared/datasets/mnist" ]; then
    MNIST=$(cd "$ROOT/../shared/datasets/mnist" && pwd)
  fi
  echo "PYTHONPATH=$PYTHONPATH MNIST=${MNIST:-none} WORK=$WORK ACCEL=$ACCEL"
  timeout 60 $PY -c "
import mlflow, optuna, optuna_integration, pydantic, sqlalchemy, lightning, torch
print('mlflow', mlflow.__version__, 'optuna', optuna.__version__, 'pydantic', pydantic.__version__,
      'sqlalchemy', sqlalchemy.__version__, 'lightning', lightning.__version__)" || echo "STEP FAILED: imports"

  step "1. GPU"
  timeout 30 nvidia-smi -L || echo "STEP FAILED: nvidia-smi"
  timeout 60 $PY -c "
import torch
print('torch', torch.__version__, 'cuda available', torch.cuda.is_available(), 'cuda', torch.version.cuda,
      'nccl', torch.cuda.nccl.version() if torch.cuda.is_available() else None)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print('device', p.name, f'{p.total_memory / 2**30:.1f} GiB', p.multi_processor_count, 'SMs')" \
    || echo "STEP FAILED: torch"

  step "2. training_speed.py --rows $SPEED_ROWS --repeats $SPEED_REPEATS"
  timeout 150 $PY benchmarks/training_speed.py --rows "$SPEED_ROWS" --repeats "$SPEED_REPEATS" \
    --out "$OUT/training_speed.json" || echo "STEP FAILED: training_speed"

  step "3. prepare + train (accelerator $ACCEL)"
  mkdir -p "$WORK/train"
  SOURCE=digits; DATAPATH=data/raw
  if [ -n "$MNIST" ]; then SOURCE=mnist; DATAPATH=$MNIST; fi
  params "$WORK/train/params.yaml" "
p['prepare'].update(source='$SOURCE', path='$DATAPATH', max_train_rows=$TRAIN_ROWS)
p['tune']['enabled'] = False
p['train'].update(accelerator='$ACCEL', max_epochs=$TRAIN_EPOCHS, patience=$TRAIN_EPOCHS, progress_bar=False)
p['mlflow']['experiment'] = 'gpu-check'"
  (cd "$WORK/train" && timeout 60 $PY "$ROOT/pipelines/prepare.py" && \
    time timeout 120 $PY "$ROOT/pipelines/train.py"; echo "train exit $?") \
    || echo "STEP FAILED: train"
  (cd "$WORK/train" && cp metrics/train.json "$OUT/train_metrics.json"; cp models/run.json "$OUT/train_run.json"
   timeout 60 $PY - <<'EOF'
import json
import mlflow
run = json.load(open("models/run.json"))
m, meta = run["metrics"], json.load(open("data/prepared/meta.json"))
print("train metrics:", json.dumps(json.load(open("metrics/train.json")), sort_keys=True))
import pyarrow.parquet as pq
rows = pq.ParquetFile("data/prepared/train.parquet").metadata.num_rows
print("data:", meta["source"], meta["image_shape"], "train rows", rows,
      "val rows", pq.ParquetFile("data/prepared/val.parquet").metadata.num_rows)
client = mlflow.MlflowClient(run["tracking_uri"])
hist = sorted(client.get_metric_history(run["run_id"], "val/loss"), key=lambda h: h.step)
stamps = [h.timestamp / 1000 for h in hist]
gaps = [round(b - a, 3) for a, b in zip(stamps, stamps[1:])]
print("epochs", m["epochs"], "fit_seconds", m["fit_seconds"], "val/loss per epoch",
      [round(h.value, 5) for h in hist], "seconds between val/loss logs (epoch time)", gaps)
if rows and gaps:
    print(f"train rows {rows}: ~{rows / (sum(gaps) / len(gaps)):.0f} rows/s per epoch (incl. validation)")
EOF
  ) || echo "STEP FAILED: train report"

  step "4. tune (accelerator $ACCEL, n_workers 1, $TUNE_TRIALS trials x $TUNE_EPOCHS epochs)"
  mkdir -p "$WORK/tune" && cp -r "$WORK/train/data" "$WORK/tune/" 2>/dev/null
  params "$WORK/tune/params.yaml" "
p['tune'].update(enabled=True, n_trials=$TUNE_TRIALS, max_epochs=$TUNE_EPOCHS, accelerator='$ACCEL', n_workers=1,
                 progress_bar=False, study_name='gpu-check', timeout=90)  # no new trial after 90 s
p['mlflow']['experiment'] = 'gpu-check-tune'"
  (cd "$WORK/tune" && time timeout 150 $PY "$ROOT/pipelines/tune.py"; echo "tune exit $?"
   cp tune/best_params.json "$OUT/tune_best_params.json" && \
   $PY -c "import json; r = json.load(open('tune/best_params.json')); print('tune trials', r['trials'], 'best', r['value'], 'trial', r['trial'], 'epochs_trained', r['epochs_trained'])") \
    || echo "STEP FAILED: tune"

  step "5. NaN stop, strategy ddp, 1 device ($ACCEL): torchrun"
  mkdir -p "$WORK/nan" && cp -r "$WORK/train/data" "$WORK/nan/" 2>/dev/null
  params "$WORK/nan/params.yaml" "
p['tune']['enabled'] = False
p['train'].update(lr=1e12, max_epochs=5, accelerator='$ACCEL', devices=1, strategy='ddp', progress_bar=False)
p['mlflow']['experiment'] = 'gpu-check-nan'"
  (cd "$WORK/nan" && timeout 90 $PY -m torch.distributed.run --standalone --nproc-per-node 1 "$ROOT/pipelines/train.py" \
     > torchrun.log 2>&1; echo "torchrun exit $?"; cat torchrun.log
   echo "backend: $(grep -o 'distributed_backend=[a-z]*' torchrun.log | head -1)"
   echo "aeops error line: $(grep '^error: ' torchrun.log | tail -1)"
   echo "outputs written: $(ls models/run.json metrics 2>/dev/null | tr '\n' ' ')") || echo "STEP FAILED: nan torchrun"

  step "5b. NaN stop, strategy ddp, 1 device ($ACCEL): plain python pipelines/train.py"
  (cd "$WORK/nan" && rm -rf models && timeout 90 $PY "$ROOT/pipelines/train.py" > plain.log 2>&1; echo "train exit $?"
   tail -5 plain.log; echo "backend: $(grep -o 'distributed_backend=[a-z]*' plain.log | head -1)"
   echo "last stderr line: $(tail -1 plain.log)") || echo "STEP FAILED: nan plain"
  cp "$WORK"/nan/*.log "$OUT/" 2>/dev/null
  step "done: $SECONDS s in all"
}

# params FILE PYTHON: the repo's params.yaml, edited by PYTHON (a dict `p`), written to FILE
params() {
  $PY -c "
import yaml
p = yaml.safe_load(open('$ROOT/params.yaml'))
$2
yaml.safe_dump(p, open('$1', 'w'), sort_keys=False)" || echo "STEP FAILED: params $1"
}

main 2>&1 | tee "$OUT/log.txt"
