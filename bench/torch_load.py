"""PyTorch's side of `npm run bench:onnx`'s load and memory columns: a zoo architecture loaded as a
PyTorch user loads it (the torchvision class, then its state dict, NAME.pt beside NAME.onnx, as
scripts/make-onnx-fixtures.py --zoo writes it), then a forward pass and one input gradient on a batch.

Usage: torch_load.py ZOO_DIR NAME BATCH OUT.json [threads]
Writes loadSeconds (class built and weights loaded), rssAfterLoadMB and peakMB (the process's
resident memory after loading, and its high-water mark after the gradient), the same in PSS (sampled),
and the weights' MB.
"""
import json, sys, threading, time


def proc_mb(path, field):
    """A `field:  N kB` line of a /proc file, in MB (NaN where it cannot be read)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float('nan')


def rss_mb(field):
    return proc_mb('/proc/self/status', field)


def pss_mb():
    return proc_mb('/proc/self/smaps_rollup', 'Pss')


class PssSampler(threading.Thread):
    """PSS sampled every 50 ms, as bench/pssSampler.ts samples uap's (torch releases the GIL in its kernels)."""
    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.done = 0.0, threading.Event()

    def run(self):
        while not self.done.wait(0.05):
            self.peak = max(self.peak, pss_mb())

    def stop(self):
        self.done.set()
        self.join()
        return max(self.peak, pss_mb())


zoo, name, batch, out_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
import torch, torchvision  # noqa: E402 (imports are the interpreter's base, not the load)
torch.set_num_threads(int(sys.argv[5]) if len(sys.argv) > 5 else 2)
from torch_net import zoo_fixtures  # noqa: E402
fixtures = zoo_fixtures()
base = rss_mb('VmRSS')
base_pss = pss_mb()
sampler = PssSampler()
sampler.start()
t0 = time.perf_counter()
kwargs = {'aux_logits': False, 'init_weights': False} if name == 'googlenet' else {}
model = fixtures.zoo_architecture(name, **kwargs)
model.load_state_dict(torch.load(f'{zoo}/{name}.pt'))
model.eval()
load_seconds = time.perf_counter() - t0
after_load = rss_mb('VmRSS')
pss_after_load = pss_mb()
weights_mb = sum(p.numel() * p.element_size() for p in model.state_dict().values()) / 2**20
x = (torch.rand(batch, 3, 224, 224) * 2 - 1).requires_grad_(True)
y = model(x)
(y[:, 1] - y[:, 0]).sum().backward()
json.dump({'loadSeconds': load_seconds, 'baseMB': base, 'rssAfterLoadMB': after_load, 'peakMB': rss_mb('VmHWM'),
           'basePssMB': base_pss, 'pssAfterLoadMB': pss_after_load, 'peakPssMB': sampler.stop(),
           'weightsMB': weights_mb}, open(out_path, 'w'))
