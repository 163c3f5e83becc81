#!/usr/bin/env bash
# Every GPU figure of benchmarks/README.md in one device call: the CUDA tests, then the four benchmarks at
# the default model size and at ~100M parameters (hidden 768, 12 layers). Each log goes to $OUT (the device
# tool's output folder) or benchmarks/out. Needs only the packages the GPU image already has:
#   bash benchmarks/gpu_session.sh          (from the repository root)
set -uo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out=${OUT:-benchmarks/out}
py=${PYTHON:-python3}
mkdir -p "$out"
"$py" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "NO CUDA")'

run() {  # run NAME ARGS...: one step, its output on the console and in $out/NAME.log
    local name=$1
    shift
    echo "== $name: $*"
    timeout 240 "$py" "$@" 2>&1 | tee "$out/$name.log"
}

run tests -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_cache.py tests/test_batching.py
run cache-100m benchmarks/cache_speedup.py --hidden 768 --layers 12
run cache-default benchmarks/cache_speedup.py --skip-bidirectional
run hook benchmarks/hook_overhead.py
run hook-100m benchmarks/hook_overhead.py --hidden 768 --layers 12
run batch benchmarks/batch_throughput.py
run batch-100m benchmarks/batch_throughput.py --hidden 768 --layers 12
run loop benchmarks/loop_overhead.py
run loop-100m benchmarks/loop_overhead.py --hidden 768 --layers 12
run loop-100m-b16 benchmarks/loop_overhead.py --hidden 768 --layers 12 --batch 16
