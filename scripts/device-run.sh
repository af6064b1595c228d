#!/usr/bin/env bash
# The GPU checks, run on the device machine from the repository root with .device/ carried
# (scripts/device-pack.sh made it here): unpacks Node and the built project, installs the Vulkan
# loader if missing, exports the bench's zoo with the machine's own PyTorch, then (1) the embedded
# model end to end on --backend webgpu beside --backend onnx, (2) bench:gpu beside PyTorch CUDA and the
# CPU engine on 2 cores. Everything it prints is also in $OUT/device.log; results land in $OUT.
# Arguments are passed to bench/gpu.js (e.g. --models=resnet18 --batch=64).
set -uo pipefail
OUT=${OUT:-/tmp/device-out}
mkdir -p "$OUT" /tmp/uap-node
exec > >(tee "$OUT/device.log") 2>&1
xz -dc .device/node.xz > /tmp/uap-node/node && chmod +x /tmp/uap-node/node
export PATH=/tmp/uap-node:$PATH
tar xJf .device/project.tar.xz
if ! ldconfig -p | grep -q libvulkan.so.1; then
  for f in .device/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
node --version
python3 scripts/make-onnx-fixtures.py --zoo /tmp/uap-zoo --models resnet18,resnet50,mobilenet_v2
for m in fashion test/fixtures/fashion-resnet/fashion-resnet.card.json; do
  for method in algorithm1 sgd; do
    for b in webgpu onnx; do
      /usr/bin/time -f "$m, $method on $b: %e s, peak RSS %M KB" node dist/src/cli/main.js compute -m "$m" --method $method --backend $b \
        --xi 40 --limit 1000 --val-limit 1000 --seed 1 -o "/tmp/uap-run-$b-$method-$(basename "$m")" 2>&1 | grep -E 'runs on|fooling rate on|peak RSS|error'
    done
  done
done
node dist/bench/gpu.js --zoo=/tmp/uap-zoo --cpu-batch=8 --cpu-images=64 "$@"
cp bench/results/gpu.md bench/results/gpu.json "$OUT/" 2>/dev/null || true
