"""PyTorch reference for `npm run bench`: runs the same network (bench/netFile.ts) under autograd.

Usage: torch_ref.py NET.json NET.bin INPUT.npy OUT.json [threads]
INPUT.npy: float32 [B, H, W, C] pixel batch. Prints nothing; writes timings (ms per image) and, for
the equality check, the logits and the input gradient of (logit 1 - logit 0) of image 0, in float32 and
float64.
"""
import json, sys
import numpy as np
import torch
from torch_net import read_net, run_net, time_gradients, to_dtype

net_path, bin_path, x_path, out_path = sys.argv[1:5]
torch.set_num_threads(int(sys.argv[5]) if len(sys.argv) > 5 else 2)
spec, prep = read_net(net_path, bin_path)
x = torch.from_numpy(np.load(x_path).astype(np.float32))
out = time_gradients(lambda t: run_net(spec, prep, t), x)
logits = out.pop('logits')
out['logits0'] = logits[: len(logits) // x.shape[0]]  # image 0's, as engine.ts compares
# Image 0's gradient in float64, the reference both float32 gradients are measured against: Debian's
# PyTorch 1.13 put one MobileNet's float32 gradient far beyond rounding from it with 2 threads and the
# other's with 1 thread (bench/results/engine.json, torchVsFloat64), so neither thread count is one.
x64 = x[:1].double().requires_grad_(True)
y = run_net(spec, to_dtype(prep, torch.float64), x64)
(y[0, 1] - y[0, 0]).backward()
out['grad0f64'] = x64.grad[0].numpy().reshape(-1).tolist()
json.dump(out, open(out_path, 'w'))
