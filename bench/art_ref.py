"""ART side of `npm run bench:art`: the Adversarial Robustness Toolbox's UniversalPerturbation with
DeepFool on the same network (bench/torch_net.py) and the same images as uap.

Usage (bench/art.ts runs it; PYTHONPATH must hold ART's `art/` package):
  art_ref.py --net NET.json --bin NET.bin --x X.npy --v V.npy --norm inf|2 --xi 10 --passes 1
             --noise NOISE.npy --out OUT.json [--threads 2] [--seed 0]
X.npy, V.npy: uint8 (or float32) [N, H, W, C] pixels in [0, 255].
Writes NOISE.npy (float32 [H, W, C], pixel units) and OUT.json: wall seconds of the attack alone, the
fooling rates on X and V computed here (clip(x + v, 0, 255), against the model's own clean labels, as
uap evaluates) and the per-image labels, so that the caller can compare them with uap's.
"""
import argparse, json, random, sys, time
import numpy as np
import torch
from torch_net import load_net

# uap's defaults (src/attacks/universal.ts, src/attacks/deepfool.ts) in ART's terms: DeepFool on the top
# 10 classes of the clean prediction, at most 10 steps, overshoot 0.02; stop when 1 - delta of X is fooled.
# ART's own defaults differ (max_iter 100, epsilon 1e-6); verbose off keeps tqdm from printing one bar
# per image (ART's DeepFool is called once per unfooled image).
DEEPFOOL = {'max_iter': 10, 'epsilon': 0.02, 'nb_grads': 10, 'verbose': False}
DELTA = 0.2
# UniversalPerturbation uses batch_size only for the clean labels of X; its per-pass fooling rate is
# evaluated with batch_size=1 and its inner loop predicts one image at a time, whatever this says.
ART_BATCH = 32
EVAL_BATCH = 50


class NchwNet(torch.nn.Module):
    """ART's PyTorchClassifier takes channels-first input; the Net takes NHWC pixels (preprocessing inside)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x_nchw):
        return self.net(x_nchw.permute(0, 2, 3, 1))


def nchw(a):
    return np.ascontiguousarray(a.astype(np.float32).transpose(0, 3, 1, 2))


def labels(model, x_nhwc, v=None):
    """Top-1 labels of clip(x + v, 0, 255), in batches, NHWC in."""
    out = []
    with torch.no_grad():
        for s in range(0, len(x_nhwc), EVAL_BATCH):
            b = torch.from_numpy(x_nhwc[s:s + EVAL_BATCH].astype(np.float32))
            if v is not None:
                b = torch.clamp(b + torch.from_numpy(v), 0, 255)
            out.append(model(b).argmax(1).numpy())
    return np.concatenate(out).astype(np.int64)


class Calls:
    """Counts ART's calls into the classifier and times its passes, without touching ART's code.

    ART's DeepFool runs one forward and one backward pass per class gradient; UniversalPerturbation ends
    each pass with predict(X + v, batch_size=1), which is how a pass end is recognised here.
    """

    def __init__(self, classifier):
        self.counts = {'class_gradient': 0, 'predict': 0}
        self.clean = None
        self.passes = []  # per pass: seconds since the start, ART's fooling rate on X
        self.start = time.perf_counter()
        grad, predict = classifier.class_gradient, classifier.predict

        def class_gradient(*a, **k):
            self.counts['class_gradient'] += 1
            return grad(*a, **k)

        def predict_(x, *a, **k):
            self.counts['predict'] += 1
            out = predict(x, *a, **k)
            if len(x) > 1 and self.clean is None:
                self.clean = out.argmax(1)
            elif len(x) > 1 and k.get('batch_size') == 1:
                self.passes.append({'seconds': time.perf_counter() - self.start, 'foolingRateX': float(np.mean(out.argmax(1) != self.clean))})
            return out
        classifier.class_gradient, classifier.predict = class_gradient, predict_

    def watch_attacker(self, attack):
        """Counts DeepFool runs (one per image still unfooled when its turn comes)."""
        self.counts['deepfool'] = 0
        get = attack._get_attack

        def get_attack(*a, **k):
            inner = get(*a, **k)
            generate = inner.generate

            def generate_(*a, **k):
                self.counts['deepfool'] += 1
                return generate(*a, **k)
            inner.generate = generate_
            return inner
        attack._get_attack = get_attack


def main():
    p = argparse.ArgumentParser()
    for a in ('net', 'bin', 'x', 'v', 'noise', 'out'):
        p.add_argument('--' + a, required=True)
    p.add_argument('--norm', choices=['inf', '2'], required=True)
    p.add_argument('--xi', type=float, required=True)
    p.add_argument('--passes', type=int, default=1)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--seed', type=int, default=0)
    o = p.parse_args()

    import art
    from art.attacks.evasion import UniversalPerturbation
    from art.estimators.classification import PyTorchClassifier

    torch.set_num_threads(o.threads)
    # ART shuffles X with the `random` module each pass; seeding it makes a run repeatable.
    random.seed(o.seed)
    np.random.seed(o.seed)
    torch.manual_seed(o.seed)

    net = load_net(o.net, o.bin)
    h, w, c = net.input_shape
    X = np.load(o.x)
    V = np.load(o.v)
    classifier = PyTorchClassifier(NchwNet(net), loss=torch.nn.CrossEntropyLoss(), input_shape=(c, h, w), nb_classes=1000,
                                   clip_values=(0, 255), device_type='cpu')
    norm = np.inf if o.norm == 'inf' else 2
    attack = UniversalPerturbation(classifier, attacker='deepfool', attacker_params=DEEPFOOL, delta=DELTA, max_iter=o.passes,
                                   eps=o.xi, norm=norm, batch_size=ART_BATCH, verbose=False)
    x = nchw(X)
    calls = Calls(classifier)
    calls.watch_attacker(attack)
    attack.generate(x)
    wall = time.perf_counter() - calls.start
    del x

    v = np.ascontiguousarray(attack.noise[0].transpose(1, 2, 0)).astype(np.float32)  # [1, C, H, W] -> [H, W, C]
    np.save(o.noise, v)
    clean_x, adv_x = labels(net, X), labels(net, X, v)
    clean_v, adv_v = labels(net, V), labels(net, V, v)
    json.dump({
        'art': art.__version__, 'torch': torch.__version__, 'threads': torch.get_num_threads(), 'seed': o.seed,
        'deepfool': {k: v_ for k, v_ in DEEPFOOL.items() if k != 'verbose'}, 'delta': DELTA, 'artBatch': ART_BATCH,
        'wallSeconds': wall, 'passes': calls.passes, 'converged': bool(attack.converged),
        'artFoolingRateX': float(attack.fooling_rate), 'calls': calls.counts,
        'foolingX': float(np.mean(clean_x != adv_x)), 'foolingV': float(np.mean(clean_v != adv_v)),
        'normL2': float(np.linalg.norm(v.reshape(-1))), 'normLinf': float(np.abs(v).max()),
        'cleanX': clean_x.tolist(), 'advX': adv_x.tolist(), 'cleanV': clean_v.tolist(), 'advV': adv_v.tolist(),
    }, open(o.out, 'w'))


if __name__ == '__main__':
    sys.exit(main())
