"""A uap Net (bench/netFile.ts: NET.json + NET.bin) rebuilt in PyTorch, for the references in bench/.

`load_net(json_path, bin_path)` gives an nn.Module taking NHWC float32 pixels (what the Net's own
preprocessing expects) and returning its output (logits). Weights are plain tensors, not parameters, so
autograd computes input gradients only, as the uap engine does (CPU only: nothing moves them to a device). Inside it runs NCHW, like the ONNX
export, so PyTorch's oneDNN convolutions are used.
"""
import json, math
import numpy as np
import torch
import torch.nn.functional as F


def same_pads(size, k, s):
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def window_pads(padding, x, kh, kw, strides):
    """F.pad's (left, right, top, bottom) for a Net padding: 'same' / 'valid' as TensorFlow, or explicit [[t, b], [l, r]]."""
    if padding == 'valid':
        return (0, 0, 0, 0)
    if padding == 'same':
        (t, bo), (l, r) = same_pads(x.shape[2], kh, strides[0]), same_pads(x.shape[3], kw, strides[1])
        return (l, r, t, bo)
    (t, bo), (l, r) = padding
    return (l, r, t, bo)


def act(x, a):
    if isinstance(a, dict):
        return F.leaky_relu(x, a['leaky'])
    return {
        'linear': lambda t: t, 'relu': F.relu, 'relu6': lambda t: F.hardtanh(t, 0, 6), 'relu1': lambda t: F.hardtanh(t, -1, 1),
        'sigmoid': torch.sigmoid, 'tanh': torch.tanh, 'elu': F.elu, 'softmax': lambda t: F.softmax(t, -1),
        'log': lambda t: torch.log(torch.clamp(t, min=1e-30)),
    }[a](x)


def nhwc_axis(a, rank):
    a = a + rank if a < 0 else a
    return [0, 2, 3, 1][a] if rank == 4 else a


def chan(t, rank):
    """A constant broadcast along NHWC's last axis, for an NCHW tensor."""
    return t.reshape(-1, 1, 1) if rank == 4 and t.dim() == 1 else t


def prepare_weights(spec, blob):
    """Weights per node name, in PyTorch layouts (NCHW inside, like the ONNX export)."""
    def W(r):
        if r is None:
            return None
        n = int(np.prod(r['shape'])) if r['shape'] else 1
        return torch.from_numpy(blob[r['offset']:r['offset'] + n].reshape(r['shape']).copy())

    prep = {}
    for n in spec['nodes']:
        o = n['op']
        if o['kind'] == 'conv':
            k = W(o['kernel'])  # [kh, kw, in / group, out]
            prep[n['name']] = (k.permute(3, 2, 0, 1).contiguous(), W(o['bias']))
        elif o['kind'] == 'dense':
            prep[n['name']] = (W(o['kernel']), W(o['bias']))
        elif o['kind'] == 'affine':
            prep[n['name']] = (W(o['scale']), W(o['shift']))
        elif o['kind'] == 'binary' and o['constant']:
            prep[n['name']] = W(o['constant']['weights'])
    return prep


def run_net(spec, prep, x_nhwc):
    """The Net's forward pass on NHWC input; `prep` from prepare_weights."""
    vals = {spec['input']: x_nhwc.permute(0, 3, 1, 2)}
    for n in spec['nodes']:
        o = n['op']; xs = [vals[i] for i in n['inputs']]; x = xs[0]; rank = x.dim(); kind = o['kind']
        if kind == 'conv':
            w, b = prep[n['name']]
            d = o.get('dilations') or [1, 1]
            kh, kw = (w.shape[2] - 1) * d[0] + 1, (w.shape[3] - 1) * d[1] + 1
            x = F.pad(x, window_pads(o['padding'], x, kh, kw, o['strides']))
            y = act(F.conv2d(x, w, b, stride=o['strides'], dilation=d, groups=o['group']), o['act'])
        elif kind == 'dense':
            w, b = prep[n['name']]
            y = x @ w
            y = act(y + b if b is not None else y, o['act'])
        elif kind == 'affine':
            s, sh = prep[n['name']]
            y = x * chan(s, rank) + chan(sh, rank)
        elif kind == 'act':
            y = act(x, o['act'])
        elif kind == 'pool':
            kh, kw = o['size']; sh_, sw_ = o['strides']
            pads = window_pads(o['padding'], x, kh, kw, o['strides'])
            if o['mode'] == 'max':
                y = F.max_pool2d(F.pad(x, pads, value=-float('inf')), (kh, kw), (sh_, sw_))
            elif any(pads):
                raise SystemExit('padded average pooling is not in the PyTorch reference')
            else:
                y = F.avg_pool2d(x, (kh, kw), (sh_, sw_))
        elif kind == 'reduce':
            axes = [nhwc_axis(a, rank) for a in o['axes']]
            y = x.mean(dim=axes, keepdim=o['keepDims']) if o['mode'] == 'mean' else x.amax(dim=axes, keepdim=o['keepDims'])
        elif kind == 'pad':
            p = o['pads']  # NHWC [before, after] per axis -> F.pad order: last NCHW axis first (W, H, C)
            y = F.pad(x, (p[2][0], p[2][1], p[1][0], p[1][1], p[3][0], p[3][1])) if rank == 4 else F.pad(x, tuple(v for pr in reversed(p[1:]) for v in pr))
        elif kind == 'reshape':
            t = x.permute(0, 2, 3, 1) if rank == 4 else x
            y = t.reshape(t.shape[0], *o['shape'])
            if y.dim() == 4:
                y = y.permute(0, 3, 1, 2)
        elif kind == 'binary':
            f = {'add': torch.add, 'sub': torch.sub, 'mul': torch.mul}[o['op']]
            if o['constant']:
                c = chan(prep[n['name']], rank)
                y = f(c, x) if o['constant']['first'] else f(x, c)
            else:
                y = xs[0]
                for t in xs[1:]:
                    y = f(y, t)
            y = act(y, o['act'])
        elif kind == 'concat':
            y = act(torch.cat(xs, dim=nhwc_axis(o['axis'], rank)), o['act'])
        elif kind == 'slice':
            a = nhwc_axis(o['axis'], rank)
            end = None if abs(o['end']) >= 2 ** 53 - 1 else o['end']
            # Python's slicing picks the indices (negative steps included, which torch tensors refuse).
            picked = list(range(x.shape[a]))[slice(o['begin'], end, o['step'])]
            y = torch.index_select(x, a, torch.tensor(picked))
        elif kind == 'softmax':
            a = nhwc_axis(o['axis'], rank)
            y = F.log_softmax(x, a) if o['log'] else F.softmax(x, a)
        elif kind == 'identity':
            y = x
        else:
            raise SystemExit('unknown op ' + kind)
        vals[n['name']] = y
    return vals[spec['output']]


def read_net(json_path, bin_path):
    """(spec, weights) of a Net written by bench/netFile.ts."""
    spec = json.load(open(json_path))
    return spec, prepare_weights(spec, np.fromfile(bin_path, dtype=np.float32))


class NetModule(torch.nn.Module):
    """The Net as a module: NHWC float32 pixels in, its output (logits) out."""

    def __init__(self, spec, prep):
        super().__init__()
        self.spec = spec
        self.prep = prep
        self.input_shape = spec['inputShape']  # [H, W, C]

    def forward(self, x_nhwc):
        return run_net(self.spec, self.prep, x_nhwc)


def load_net(json_path, bin_path):
    """NET.json + NET.bin -> NetModule (eval mode; it has no dropout or batch norm in training form)."""
    return NetModule(*read_net(json_path, bin_path)).eval()


def to_dtype(v, dtype):
    """The prepared weights (tensors inside dicts and lists) in another float type."""
    if torch.is_tensor(v):
        return v.to(dtype) if v.is_floating_point() else v
    if isinstance(v, dict):
        return {k: to_dtype(w, dtype) for k, w in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(to_dtype(w, dtype) for w in v)
    return v


def zoo_fixtures():
    """scripts/make-onnx-fixtures.py as a module: the zoo's architectures (zoo_architecture) and seeded
    models (zoo_model), MEAN and STD."""
    import importlib.util, os
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'scripts', 'make-onnx-fixtures.py')
    spec = importlib.util.spec_from_file_location('fixtures', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def blas_library():
    """The BLAS library this process runs matrix products on (Debian's torch links whichever libblas.so.3
    the system's alternatives name: the reference BLAS where no OpenBLAS is installed, tens of times
    slower on Linear layers and attention)."""
    libs = [line.split()[-1] for line in open('/proc/self/maps') if 'blas' in line.split()[-1]]
    return libs[0] if libs else 'unknown'


def time_gradients(forward, x, forward_repeats=10, grad_repeats=5):
    """ms per image (best of the repeats) of a forward pass, one input gradient (of logit 1 - logit 0)
    and ten (one forward pass, a retain_graph backward per class), with the logits and image 0's
    gradient: what the benches compare uap against. `forward` maps an [B, H, W, C] pixel batch to logits."""
    import time
    B = x.shape[0]

    def best(f, repeats):
        f()
        t = []
        for _ in range(repeats):
            s = time.perf_counter(); f(); t.append(time.perf_counter() - s)
        return min(t) * 1000 / B

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

    with torch.no_grad():
        fwd_ms = best(lambda: forward(x), forward_repeats)
        logits = forward(x).numpy()
    return {'threads': torch.get_num_threads(), 'torch': torch.__version__, 'blas': blas_library(), 'batch': B, 'forwardMs': fwd_ms,
            'gradientMs': best(one_grad, grad_repeats), 'tenGradientsMs': best(ten_grads, grad_repeats),
            'logits': logits.reshape(-1).tolist(), 'grad0': one_grad()[0].numpy().reshape(-1).tolist()}
