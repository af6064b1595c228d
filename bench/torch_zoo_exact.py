"""PyTorch reference for `npm run bench:zoo-exact`: a zoo architecture rebuilt with the same seeded
weights as its ONNX export (scripts/make-onnx-fixtures.py --zoo), its logits on the given images and
the pixel gradient of (logit 1 - logit 0) of image 0, in float32 and in float64 (the exact answer).
No timing: bench/torch_zoo.py times; this one is quick enough for ViT-B/16 on 2 cores.

Usage: torch_zoo_exact.py NAME PIXELS.npy OUT.json
PIXELS.npy: float32 [B, H, W, 3] pixels in [0, 255]; normalised with torchvision's mean / std inside.
"""
import importlib.util, json, os, sys
import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location('fixtures', os.path.join(here, '..', 'scripts', 'make-onnx-fixtures.py'))
fixtures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fixtures)

name, x_path, out_path = sys.argv[1:4]
torch.set_num_threads(2)
model = fixtures.zoo_model(name)
px = torch.from_numpy(np.load(x_path).astype(np.float32))
mean, std = torch.tensor(fixtures.MEAN), torch.tensor(fixtures.STD)
run = lambda m, p, mu, sd: m(((p - mu) / sd).permute(0, 3, 1, 2))
with torch.no_grad():
    logits = run(model, px, mean, std)
out = {'logits': logits.numpy().reshape(-1).tolist()}
for key, dtype in (('grad0', torch.float32), ('grad0f64', torch.float64)):
    p = px[:1].to(dtype).requires_grad_(True)
    y = run(model.to(dtype), p, mean.to(dtype), std.to(dtype))
    (y[0, 1] - y[0, 0]).backward()
    out[key] = p.grad[0].numpy().reshape(-1).tolist()
json.dump(out, open(out_path, 'w'))
