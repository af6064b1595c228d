"""PyTorch reference for `npm run bench`: runs the same network (bench/netFile.ts) under autograd.

Usage: torch_ref.py NET.json NET.bin INPUT.npy OUT.json [threads]
INPUT.npy: float32 [B, H, W, C] pixel batch. Prints nothing; writes timings (ms per image) and, for
the equality check, the logits and the input gradient of (logit 1 - logit 0) of image 0.
"""
import json, sys, time
import numpy as np
import torch
from torch_net import read_net, run_net

net_path, bin_path, x_path, out_path = sys.argv[1:5]
torch.set_num_threads(int(sys.argv[5]) if len(sys.argv) > 5 else 2)
spec, prep = read_net(net_path, bin_path)

def forward(x_nhwc):
    return run_net(spec, prep, x_nhwc)

x = torch.from_numpy(np.load(x_path).astype(np.float32))
B = x.shape[0]

def best(f, repeats=5):
    f()
    t = []
    for _ in range(repeats):
        s = time.perf_counter(); f(); t.append(time.perf_counter() - s)
    return min(t) * 1000 / B

with torch.no_grad():
    fwd_ms = best(lambda: forward(x), 10)

def one_grad():
    xi = x.clone().requires_grad_(True)
    y = forward(xi)
    (y[:, 1] - y[:, 0]).sum().backward()
    return xi.grad

def ten_grads():
    xi = x.clone().requires_grad_(True)
    y = forward(xi)
    for j in range(10):
        xi.grad = None
        y[:, 10 + j].sum().backward(retain_graph=True)

grad_ms = best(one_grad)
ten_ms = best(ten_grads)
g = one_grad()[0].numpy()
with torch.no_grad():
    logits = forward(x)[0].numpy()
json.dump({'threads': torch.get_num_threads(), 'torch': torch.__version__, 'batch': B, 'forwardMs': fwd_ms, 'gradientMs': grad_ms,
           'tenGradientsMs': ten_ms, 'logits0': logits.tolist(), 'grad0': g.reshape(-1).tolist()}, open(out_path, 'w'))
