"""PyTorch reference for `npm run bench`: runs the same network (bench/netFile.ts) under autograd.

Usage: torch_ref.py NET.json NET.bin INPUT.npy OUT.json [threads]
INPUT.npy: float32 [B, H, W, C] pixel batch. Prints nothing; writes timings (ms per image) and, for
the equality check, the logits and the input gradient of (logit 1 - logit 0) of image 0.
"""
import json, sys
import numpy as np
import torch
from torch_net import read_net, run_net, time_gradients

net_path, bin_path, x_path, out_path = sys.argv[1:5]
torch.set_num_threads(int(sys.argv[5]) if len(sys.argv) > 5 else 2)
spec, prep = read_net(net_path, bin_path)
x = torch.from_numpy(np.load(x_path).astype(np.float32))
out = time_gradients(lambda t: run_net(spec, prep, t), x)
logits = out.pop('logits')
out['logits0'] = logits[: len(logits) // x.shape[0]]  # image 0's, as engine.ts compares
json.dump(out, open(out_path, 'w'))
