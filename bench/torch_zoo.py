"""PyTorch reference for `npm run bench:onnx`: a torchvision architecture rebuilt with the same seeded
weights as its ONNX export in the zoo (scripts/make-onnx-fixtures.py --zoo), timed under autograd.

Usage: torch_zoo.py NAME PIXELS.npy OUT.json [threads]
PIXELS.npy: float32 [B, H, W, 3] pixels in [0, 255]; normalised with torchvision's mean / std inside.
Writes ms per image for the forward pass, one input gradient and ten (bench/torch_net.py's
time_gradients), the logits, and the pixel gradient of (logit 1 - logit 0) of image 0, in float32
and float64.
"""
import importlib.util, json, os, sys
import numpy as np
import torch
from torch_net import time_gradients

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location('fixtures', os.path.join(here, '..', 'scripts', 'make-onnx-fixtures.py'))
fixtures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fixtures)

name, x_path, out_path = sys.argv[1:4]
torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 2)
model = fixtures.zoo_model(name)
px = torch.from_numpy(np.load(x_path).astype(np.float32))
mean, std = torch.tensor(fixtures.MEAN), torch.tensor(fixtures.STD)
out = time_gradients(lambda p: model(((p - mean) / std).permute(0, 3, 1, 2)), px, 5, 3)
# Image 0's gradient in float64: how far PyTorch's own float32 result is from exact (max-pool argmaxes
# between values equal to rounding, as flat image regions give, can go either way).
p64 = px[:1].double().requires_grad_(True)
y = model.double()(((p64 - mean.double()) / std.double()).permute(0, 3, 1, 2))
(y[0, 1] - y[0, 0]).backward()
out['grad0f64'] = p64.grad[0].numpy().reshape(-1).tolist()
json.dump(out, open(out_path, 'w'))
