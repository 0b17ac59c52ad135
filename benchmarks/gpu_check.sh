#!/bin/bash
# The project's one-GPU check (about 7 minutes on one H200; every step has its own time limit).
# Run from the repository root:  bash benchmarks/gpu_check.sh        (writes 9 files under $OUT)
#                                DRY=1 bash benchmarks/gpu_check.sh  (tiny sizes on the CPU: tests the script)
# The search needs `higher`: where it is missing, put its wheel in .whl/ (see benchmarks/README.md).
set -u
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"; PY=${PY:-python3}; R=/tmp/gpu_runs; rm -rf "$R"; mkdir -p "$R"
DRY=${DRY:-0}; D=""; [ "$DRY" = 1 ] && D="--dry-cpu"
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TORCH_CPP_LOG_LEVEL=ERROR
step() { local name=$1 limit=$2; shift 2; echo "== $name (limit ${limit}s): $*" >> "$OUT/$name"
         local t0=$SECONDS; timeout "$limit" "$@" >> "$OUT/$name" 2>&1; local rc=$?
         echo "== rc=$rc after $((SECONDS - t0))s" >> "$OUT/$name"; }

# 0. the machine
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpus', torch.cuda.device_count())"
  nproc; uname -r; hostname; } > "$OUT/0_env.txt" 2>&1

# 1. the block-to-block hand-off on one GPU, every transport mode: late producer, data check without a
#    synchronize, reserved vs allocated memory of the receiver, latency device map vs host staging.
step 1_transport.txt 120 $PY benchmarks/gpu/transport_check.py $D

# 2. a block step without synchronisations vs with the old five per step (ResNet-152, shipped K = 4 cut).
step 2_step.txt 100 $PY benchmarks/gpu/step_check.py $D

# 3. K = 4 block processes on one GPU, both transports, vs the single-process trainer on the same GPU;
#    GPU memory per process every 2 s; the listening sockets of the run (loopback only).
if [ "$DRY" = 1 ]; then
  C="--arch small --decoupling dgl:4 --dataset synthetic --image-size 16 --batch-size 16 --steps 12 --eval-interval 6 --checkpoint-interval 6 --plain"
  DEVS="cpu"; SDEV="cpu"
else
  C="--arch resnet152 --decoupling resnet152_k4.json --dataset synthetic --image-size 64 --batch-size 128 --steps 80 --eval-interval 40 --checkpoint-interval 40 --plain"
  DEVS="cuda:0,cuda:0,cuda:0,cuda:0"; SDEV="cuda"
fi
( while sleep 2; do date +%T; nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader 2>/dev/null; done ) > "$R/smi.txt" 2>&1 &
SMI=$!
( sleep 25; echo "listening sockets 25 s into the rpc pipeline run:"; $PY -c "import psutil
for c in psutil.net_connections('inet'):
    if c.status == 'LISTEN': print(' ', c.laddr, c.pid)" ) >> "$OUT/0_env.txt" 2>&1 &
for T in rpc p2p; do
  step 3_pipeline.txt 110 $PY launch/greedy.py --blocks 4 $C --devices $DEVS --transport $T --timeout 90 --out $R/pipe_$T
done
kill $SMI 2>/dev/null
step 3_pipeline.txt 100 $PY -m sedona_runtime.train $C --device $SDEV --out $R/single
step 3_pipeline.txt 20 $PY benchmarks/gpu/compare.py $R "$OUT/7_digest.json"
{ echo "== GPU memory per process (pid, used), sampled every 2 s during the pipeline runs"; cat "$R/smi.txt"; } >> "$OUT/3_pipeline.txt"

# 4. the pipeline and training tests with CUDA visible (CPU exactness tests pin --devices cpu; the CUDA ones run).
step 4_pytest.txt 150 $PY -m pytest tests/pipeline/test_cuda.py tests/pipeline/test_pipeline_exact.py tests/training -q -p no:cacheprovider -x

# 5. the search's outer step on the GPU (VGG-19 0.25x, CIFAR scale, batch 128, T = 5).
if [ -f benchmarks/search_cost.py ]; then
  if [ "$DRY" = 1 ]; then SC="--device cpu --width 0.125 --image-size 8 --batch-size 8 --head-width 8 --inner-steps 2 --val-batch-size 8 --steps 1 --warmup 0"
  else SC="--device cuda --setting vgg19 --steps 3 --warmup 1"; fi
  step 5_search.txt 90 $PY benchmarks/search_cost.py $SC --rounds 1 --phases outer --straightforward
  # 5b. stored vs recomputed hypergradient (--recompute), each worker's predicted peak vs CUDA's measured one:
  #     VGG-19 and ResNet-101 at batch 128 (issue 19; ResNet-101's stored graph needs about 80 GB).
  for a in vgg19 resnet101; do
    A="--arch $a"; [ "$DRY" = 1 ] && A=""
    step 5b_recompute.txt 120 $PY benchmarks/search_cost.py $SC $A --steps 1 --rounds 1 --phases outer --recompute
  done
fi

# 6. K = 4 on CPU core sets of this machine's cores: the speedup over backprop, both transports.
if [ "$DRY" = 1 ]; then S="--arch small --image-size 8 --batch-size 16 --steps 3 --decoupling dgl:4"
else S="--steps 12 --decoupling sedona:4 --decoupling dgl:4"; fi
step 6_speedup_cpu.txt 150 $PY benchmarks/speedup.py --device cpu --blocks 4 --warmup 3 --repeats 1 --no-defaults $S \
  --transport rpc,p2p --out $R/speedup
ls "$OUT"
