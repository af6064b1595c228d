"""PyTorch reference for `npm run bench:onnx`: a torchvision architecture rebuilt with the same seeded
weights as its ONNX export in the zoo (scripts/make-onnx-fixtures.py --zoo), timed under autograd.

Usage: torch_zoo.py NAME PIXELS.npy OUT.json [threads] [--exact | --quick]
PIXELS.npy: float32 [B, H, W, 3] pixels in [0, 255]; normalised with torchvision's mean / std inside.
Writes ms per image for the forward pass, one input gradient and ten (bench/torch_net.py's
time_gradients), the logits, and the pixel gradient of (logit 1 - logit 0) of image 0, in float32
and float64. With --exact, no timing (bench:zoo-exact): the logits and the two gradients alone, which
takes a few minutes where timing a transformer under four settings takes far longer. With --quick,
each timing is the best of two runs after a warm-up (the transformers' rows).
"""
import json, sys
import numpy as np
import torch
from torch_net import time_gradients, zoo_fixtures

fixtures = zoo_fixtures()

args = [a for a in sys.argv[1:] if not a.startswith('--')]
name, x_path, out_path = args[:3]
torch.set_num_threads(int(args[3]) if len(args) > 3 else 2)
model = fixtures.zoo_model(name)
px = torch.from_numpy(np.load(x_path).astype(np.float32))
mean, std = torch.tensor(fixtures.MEAN), torch.tensor(fixtures.STD)
forward = lambda p: model(((p - mean) / std).permute(0, 3, 1, 2))
if '--exact' in sys.argv:
    with torch.no_grad():
        logits = forward(px)
    x0 = px[:1].clone().requires_grad_(True)
    y = forward(x0)
    (y[0, 1] - y[0, 0]).backward()
    out = {'logits': logits.numpy().reshape(-1).tolist(), 'grad0': x0.grad[0].numpy().reshape(-1).tolist()}
else:
    out = time_gradients(forward, px, *((2, 2) if '--quick' in sys.argv else (5, 3)))
# Image 0's gradient in float64: how far PyTorch's own float32 result is from exact (max-pool argmaxes
# between values equal to rounding, as flat image regions give, can go either way).
p64 = px[:1].double().requires_grad_(True)
y = model.double()(((p64 - mean.double()) / std.double()).permute(0, 3, 1, 2))
(y[0, 1] - y[0, 0]).backward()
out['grad0f64'] = p64.grad[0].numpy().reshape(-1).tolist()
json.dump(out, open(out_path, 'w'))
