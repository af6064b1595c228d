#!/usr/bin/env bash
# Packs what a GPU machine with no Node and no network needs to run the GPU checks
# (scripts/device-run.sh), into .device/ (git-ignored; name it in the device tool's `carry`):
# this machine's Node binary, the built project with its production node_modules (ONNX Runtime's
# linux-x64 library only), and the Vulkan loader's Debian package. The working tree and .device/
# travel together under the tool's 64 MiB limit (about 60 MB today: xz, no source maps or typings).
set -euo pipefail
cd "$(dirname "$0")/.."
npm run build:lib >/dev/null
rm -rf .device && mkdir -p .device
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp package.json package-lock.json "$stage/"
cp -r node_modules "$stage/"
(cd "$stage" && npm prune --omit=dev --ignore-scripts >/dev/null 2>&1)
# onnxruntime-node is an optional peer (dev dependency here): its linux-x64 build goes in by hand.
for p in onnxruntime-node onnxruntime-common; do
  mkdir -p "$stage/node_modules/$p"
  (cd node_modules/$p && tar cf - --exclude=bin . ) | (cd "$stage/node_modules/$p" && tar xf -)
done
mkdir -p "$stage/node_modules/onnxruntime-node/bin/napi-v6/linux"
cp -r node_modules/onnxruntime-node/bin/napi-v6/linux/x64 "$stage/node_modules/onnxruntime-node/bin/napi-v6/linux/"
find "$stage/node_modules" \( -name '*.map' -o -name '*.d.ts' -o -name '*.md' \) -delete
rm -rf "$stage/node_modules/@types"
cp -r dist "$stage/dist"
find "$stage/dist" -name '*.map' -delete
tar cf - -C "$stage" node_modules dist | xz -T2 -6 > .device/project.tar.xz
xz -T2 -6 -c "$(command -v node)" > .device/node.xz
(cd .device && apt-get download libvulkan1 >/dev/null 2>&1) || echo 'device-pack: apt-get download libvulkan1 failed (run apt-get update first); the device may have the loader'
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
du -sh .device
