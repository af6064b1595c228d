"""PyTorch reference for `npm run bench:gpu`: the zoo's torchvision architecture (same seeded weights as
its ONNX export, scripts/make-onnx-fixtures.py --zoo) on a device (cuda, or cpu for a smoke run), timed
as a PyTorch user would write each step: images per second of a forward pass, one input gradient, ten
candidate gradients (one forward, a retain_graph backward per class), a DeepFool step (forward, top-10
candidates, their gradients, the minimal L2 step) and an SGD-UAP epoch (clamped cross-entropy, sign
steps on v in minibatches, then the fooling rate of v on the images, as uap's pass scores it).

Usage: torch_gpu.py NAME PIXELS.npy OUT.json DEVICE BATCH
PIXELS.npy: uint8 or float32 [N, H, W, 3] pixels in [0, 255]; normalised with torchvision's mean / std.
Settings: cudnn.benchmark on, PyTorch's defaults otherwise (TF32 convolutions where the GPU has them:
what a user gets; recorded in the output).
"""
import json, sys, time
import numpy as np
import torch
from torch_net import zoo_fixtures

fixtures = zoo_fixtures()

name, x_path, out_path, device, batch = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
torch.backends.cudnn.benchmark = True
dev = torch.device(device)
model = fixtures.zoo_model(name).to(dev)
pixels = torch.from_numpy(np.load(x_path).astype(np.float32)).to(dev)
mean = torch.tensor(fixtures.MEAN, device=dev).view(1, 3, 1, 1)
std = torch.tensor(fixtures.STD, device=dev).view(1, 3, 1, 1)


def forward(px):
    return model((px.permute(0, 3, 1, 2) - mean) / std)


def sync():
    if dev.type == 'cuda':
        torch.cuda.synchronize()


def per_second(f, images, repeats=3):
    """Images per second, best of the repeats after one warm-up run."""
    f(); sync()
    best = float('inf')
    for _ in range(repeats):
        s = time.perf_counter(); f(); sync(); best = min(best, time.perf_counter() - s)
    return images / best


x = pixels[:batch]
B = x.shape[0]


def one_gradient():
    xi = x.clone().requires_grad_(True)
    y = forward(xi)
    (y[:, 1] - y[:, 0]).sum().backward()
    return xi.grad


def ten_gradients():
    xi = x.clone().requires_grad_(True)
    y = forward(xi)
    for j in range(10):
        xi.grad = None
        y[:, 10 + j].sum().backward(retain_graph=True)


def deepfool_step():
    """One DeepFool iteration over the batch (L2, 10 candidates): the step each image would take."""
    xi = x.clone().requires_grad_(True)
    y = forward(xi)
    top = y.detach().topk(10, dim=1).indices
    grads = []
    for j in range(10):
        g, = torch.autograd.grad(y.gather(1, top[:, j:j + 1]).sum(), xi, retain_graph=j < 9)
        grads.append(g)
    g = torch.stack(grads, 1)  # [B, 10, H, W, C]
    w = g[:, 1:] - g[:, :1]
    f = (y.detach().gather(1, top[:, 1:]) - y.detach().gather(1, top[:, :1]))
    norms = w.flatten(2).norm(dim=2) + 1e-8
    ratio = f.abs() / norms
    best = ratio.argmin(1)
    idx = torch.arange(B, device=dev)
    step = (ratio[idx, best] + 1e-4).view(B, 1, 1, 1) * w[idx, best] / norms[idx, best].view(B, 1, 1, 1)
    return (x + step).clamp(0, 255)


def sgd_epoch(xi=10.0, beta=12.0, minibatch=32):
    """One pass of SGD-UAP (sign steps, lr xi / 10) over every image, then v's fooling rate on them."""
    v = torch.zeros(1, *pixels.shape[1:], device=dev)
    with torch.no_grad():
        labels = torch.cat([forward(pixels[i:i + batch]).argmax(1) for i in range(0, len(pixels), batch)])
    for i in range(0, len(pixels), minibatch):
        vi = v.clone().requires_grad_(True)
        y = forward((pixels[i:i + minibatch] + vi).clamp(0, 255))
        loss = torch.nn.functional.cross_entropy(y, labels[i:i + minibatch], reduction='none').clamp(max=beta).mean()
        g, = torch.autograd.grad(loss, vi)
        v = (v + xi / 10 * g.sign()).clamp(-xi, xi)
    with torch.no_grad():
        fooled = torch.cat([forward((pixels[i:i + batch] + v).clamp(0, 255)).argmax(1) for i in range(0, len(pixels), batch)])
    return (fooled != labels).float().mean().item()


with torch.no_grad():
    fwd = per_second(lambda: forward(x), B)
out = {
    'torch': torch.__version__,
    'device': torch.cuda.get_device_name(dev) if dev.type == 'cuda' else f'CPU ({torch.get_num_threads()} threads)',
    'tf32Convolutions': bool(torch.backends.cudnn.allow_tf32) if dev.type == 'cuda' else False,
    'batch': B,
    'forward': fwd,
    'gradient': per_second(one_gradient, B),
    'tenGradients': per_second(ten_gradients, B),
    'deepfoolStep': per_second(deepfool_step, B),
    'sgdEpoch': per_second(sgd_epoch, len(pixels), repeats=1),
}
json.dump(out, open(out_path, 'w'))
