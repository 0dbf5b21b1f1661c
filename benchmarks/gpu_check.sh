#!/usr/bin/env bash
# GPU figures in one short run (issue 17): the CUDA tests, then the engine, MediQ-GAN and diffusion benchmarks with
# --device cuda, each appending to benchmarks/RESULTS.md, plus the 20-qubit x 320-circuit memory check.
#
#   bash benchmarks/gpu_check.sh [OUT]      # OUT: where logs and RESULTS.md go back (default ./gpu-check)
#
# Needs a CUDA build of torch (a GPU machine's venv: `pip install -e '.[test]'` with its own torch). Budget: about
# 6-8 minutes on an H100/H200-class GPU; each part has its own timeout so a hang cannot eat the rest.
# Targets (issue 17): engine >= 1000x the CPU per-sample loop on the MediQ-GAN circuit at batch 64; paper iteration
# < 50 ms; 20 qubits x 320 circuits within the GPU's memory, or refused with the correct message.
set -uo pipefail
OUT=${1:-gpu-check}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name())" \
  | tee -a "$OUT/gpu.txt" || exit 1
run() {  # name, timeout in seconds, command...
  local name=$1 limit=$2; shift 2
  echo "== $name" | tee -a "$OUT/summary.txt"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "   exit $? ($(tail -n 1 "$OUT/$name.log"))" | tee -a "$OUT/summary.txt"
}
run cuda-tests 180 $PY -m pytest -q -rs -p no:cacheprovider -k cuda tests
run train-smoke 180 bash -c "$PY -m qmedgen train mediqgan --data embedded-bloodmnist --size 28 --steps 5 --device cuda --out $OUT/runs --no-progress \
  && $PY -m qmedgen train qdiffusion --data embedded-retinamnist --size 28 --steps 5 --device cuda --out $OUT/runs --no-progress"
run engine 150 $PY benchmarks/bench_engine.py --device cuda --quick --note "GPU check"
run engine-big 90 $PY benchmarks/bench_engine.py --device cuda --big --note "GPU check"
run mediqgan 120 $PY benchmarks/bench_mediqgan.py --device cuda --iters 20 --note "GPU check"
run mediqgan-amp 90 $PY benchmarks/bench_mediqgan.py --device cuda --iters 20 --amp --only paper --note "GPU check"
run qdiffusion 120 $PY benchmarks/bench_qdiffusion.py --device cuda --parts speed,sampling --note "GPU check"
cp benchmarks/RESULTS.md "$OUT/RESULTS.md"
