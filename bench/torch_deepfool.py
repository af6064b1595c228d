"""Textbook DeepFool in PyTorch, the reference uap's DeepFool is timed and checked against.

Multi-class, L2 (Moosavi-Dezfooli et al., CVPR 2016, Algorithm 2), written the way the authors'
PyTorch code is: one image at a time, candidates = the top-k classes of the clean prediction, one
backward pass per candidate class on a retained graph, step r_i = (|f_l| / ||w_l|| + 1e-4) w_l / ||w_l||,
stop as soon as the top-1 label leaves the clean one, overshoot applied to the total: r = (1 + o) sum r_i.
No clipping to the pixel range, as in the textbook code (uap's DeepFool does not clip either).

Usage: torch_deepfool.py NET.json NET.bin IMAGES.npy OUT.json [threads] [candidates] [overshoot] [max_steps]
IMAGES.npy: float32 (or uint8) [N, H, W, C] pixels in [0, 255]; defaults 2 threads, 10 candidates,
overshoot 0.02, 50 steps. Prints nothing; OUT.json holds per image ||r||_2, ||r||_inf, steps, clean and
final labels, and msPerImage (wall time of the whole loop / N, after one warm-up image).
"""
import json, sys, time
import numpy as np
import torch
from torch_net import load_net


def deepfool(net, image, candidates=10, overshoot=0.02, max_steps=50):
    """DeepFool on one [H, W, C] image; net takes NHWC. Returns (r [H, W, C], steps, clean label, final label)."""
    x0 = image[None]
    with torch.no_grad():
        order = torch.argsort(net(x0)[0], descending=True)[:candidates].tolist()
    label = order[0]
    r_tot = torch.zeros_like(x0)
    x = x0.clone().requires_grad_(True)
    fs = net(x)[0]
    k_i, steps = label, 0
    while k_i == label and steps < max_steps:
        fs[label].backward(retain_graph=True)
        grad_orig = x.grad.clone()
        pert, w = np.inf, None
        for k in order[1:]:
            x.grad.zero_()
            fs[k].backward(retain_graph=True)
            w_k = x.grad - grad_orig
            pert_k = abs((fs[k] - fs[label]).item()) / w_k.norm().item()
            if pert_k < pert:
                pert, w = pert_k, w_k
        r_tot = r_tot + (pert + 1e-4) * w / w.norm()
        x = (x0 + (1 + overshoot) * r_tot).requires_grad_(True)
        fs = net(x)[0]
        k_i = int(fs.argmax())
        steps += 1
    return ((1 + overshoot) * r_tot)[0], steps, label, k_i


def main():
    net_path, bin_path, x_path, out_path = sys.argv[1:5]
    extra = sys.argv[5:]
    threads = int(extra[0]) if len(extra) > 0 else 2
    candidates = int(extra[1]) if len(extra) > 1 else 10
    overshoot = float(extra[2]) if len(extra) > 2 else 0.02
    max_steps = int(extra[3]) if len(extra) > 3 else 50
    torch.set_num_threads(threads)
    net = load_net(net_path, bin_path)
    images = torch.from_numpy(np.load(x_path).astype(np.float32))
    deepfool(net, images[0], candidates, overshoot, max_steps)  # warm-up: oneDNN primitives, allocator
    rows = []
    start = time.perf_counter()
    for img in images:
        rows.append(deepfool(net, img, candidates, overshoot, max_steps))
    total = time.perf_counter() - start
    json.dump({
        'threads': torch.get_num_threads(), 'torch': torch.__version__, 'images': len(images), 'candidates': candidates,
        'overshoot': overshoot, 'maxSteps': max_steps, 'msPerImage': total * 1000 / len(images),
        'l2': [float(r.norm()) for r, *_ in rows], 'linf': [float(r.abs().max()) for r, *_ in rows],
        'steps': [s for _, s, _, _ in rows], 'label': [l for *_, l, _ in rows], 'finalLabel': [k for *_, k in rows],
    }, open(out_path, 'w'))


if __name__ == '__main__':
    main()
