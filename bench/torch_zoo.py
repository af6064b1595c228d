"""PyTorch reference for `npm run bench:onnx`: a torchvision architecture rebuilt with the same seeded
weights as its ONNX export in the zoo (scripts/make-onnx-fixtures.py --zoo), timed under autograd.

Usage: torch_zoo.py NAME PIXELS.npy OUT.json [threads]
PIXELS.npy: float32 [B, H, W, 3] pixels in [0, 255]; normalised with torchvision's mean / std inside.
Writes ms per image (best of several repeats) for the forward pass, one input gradient and ten
(one forward, retain_graph), the logits, and the pixel gradient of (logit 1 - logit 0) of image 0.
"""
import importlib.util, json, os, sys, time
import numpy as np
import torch
import torchvision

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location('fixtures', os.path.join(here, '..', 'scripts', 'make-onnx-fixtures.py'))
fixtures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fixtures)

name, x_path, out_path = sys.argv[1:4]
torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 2)
model = fixtures.zoo_model(name)
px = torch.from_numpy(np.load(x_path).astype(np.float32))
B = px.shape[0]
mean = torch.tensor(fixtures.MEAN)
std = torch.tensor(fixtures.STD)


def forward(p):
    return model(((p - mean) / std).permute(0, 3, 1, 2))


def best(f, repeats=5):
    f()
    t = []
    for _ in range(repeats):
        s = time.perf_counter(); f(); t.append(time.perf_counter() - s)
    return min(t) * 1000 / B


def one_grad():
    p = px.clone().requires_grad_(True)
    y = forward(p)
    (y[:, 1] - y[:, 0]).sum().backward()
    return p.grad


def ten_grads():
    p = px.clone().requires_grad_(True)
    y = forward(p)
    for j in range(10):
        p.grad = None
        y[:, 10 + j].sum().backward(retain_graph=True)


with torch.no_grad():
    fwd = best(lambda: forward(px), 5)
    logits = forward(px).numpy()
g = one_grad()[0].numpy()
json.dump({'threads': torch.get_num_threads(), 'torch': torch.__version__, 'batch': B, 'forwardMs': fwd, 'gradientMs': best(one_grad, 3),
           'tenGradientsMs': best(ten_grads, 3), 'logits': logits.reshape(-1).tolist(), 'grad0': g.reshape(-1).tolist()}, open(out_path, 'w'))
