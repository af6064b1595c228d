"""PyTorch's own streamed evaluation, the anchor for `bench:stream --torch`: the same tar shards read the
way a PyTorch user would (an IterableDataset over the shards with Python's tarfile, PIL decode, a
DataLoader with worker processes), the same weights, and per batch the same work as uap's bench:
argmax labels of the clean images and of the images + a fixed perturbation, clipped to [0, 255].

Usage: torch_stream.py SHARDS_DIR OUT.json (--net NET.json --bin NET.bin | --zoo NAME)
                       [--workers 2] [--batch 32] [--threads 2]
--net/--bin: a uap Net written by bench/netFile.ts (NHWC pixels in [0, 255], preprocessing included);
--zoo: a torchvision architecture of scripts/make-onnx-fixtures.py (same seeded weights as its ONNX
export), torchvision's mean / std applied to the batch. Samples are webdataset style (consecutive
members sharing a key: key.png / key.jpg, optionally key.cls); images larger than the model's input
get torchvision's Resize(short side) + CenterCrop, what sharp's `fit: cover` does in uap's decoder.
Writes (and prints) images, seconds, msPerImage, imagesPerSecond, firstBatchMs (DataLoader start to
the first batch's labels), peak RSS (this process + the largest worker), and the same DataLoader's rate
without the model (decodeImagesPerSecond). Run it with OMP_WAIT_POLICY=PASSIVE (bench/stream.ts does):
spinning OpenMP threads take the cores the workers decode on (ResNet-18: 2x slower, see stream.ts).
"""
import argparse, io, json, os, resource, tarfile, time
import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info


class TarShards(IterableDataset):
    """(uint8 HWC image, label or -1) per sample. Each worker takes its own shards; with fewer shards
    than workers, every worker reads all of them and keeps every n-th sample (else workers would idle:
    the 5,000 JPEGs are one shard)."""

    def __init__(self, shards, shape):
        h, w, c = shape
        self.shards, self.mode, self.shape = shards, 'L' if c == 1 else 'RGB', shape
        self.transform = T.Compose([T.Resize(min(h, w)), T.CenterCrop((h, w))])

    def samples(self, path):
        """Consecutive members with the same key, as {extension: bytes}."""
        key, sample = None, {}
        with tarfile.open(path) as tar:
            for m in tar:
                if not m.isfile():
                    continue
                k, _, ext = m.name.partition('.')
                if k != key and sample:
                    yield sample
                    sample = {}
                key = k
                sample[ext] = tar.extractfile(m).read()
        if sample:
            yield sample

    def __iter__(self):
        info = get_worker_info()
        wid, n = (info.id, info.num_workers) if info else (0, 1)
        by_shard = len(self.shards) >= n
        for path in self.shards[wid::n] if by_shard else self.shards:
            for i, s in enumerate(self.samples(path)):
                if not by_shard and i % n != wid:
                    continue
                data = next((s[e] for e in ('png', 'jpg', 'jpeg') if e in s), None)
                if data is None:
                    continue
                img = Image.open(io.BytesIO(data)).convert(self.mode)
                yield torch.from_numpy(np.array(self.transform(img)).reshape(self.shape)), int(s['cls']) if 'cls' in s else -1


def zoo_forward(name):
    """The zoo's torchvision model with its normalisation: NHWC pixels in, logits out. NCHW by a permute,
    as bench/torch_zoo.py: channels-last strides, which oneDNN runs about 25% faster than contiguous NCHW."""
    from torch_net import zoo_fixtures
    fixtures = zoo_fixtures()
    model = fixtures.zoo_model(name)
    mean, std = torch.tensor(fixtures.MEAN), torch.tensor(fixtures.STD)
    return (lambda x: model(((x - mean) / std).permute(0, 3, 1, 2))), [224, 224, 3]


def net_forward(json_path, bin_path):
    from torch_net import load_net
    net = load_net(json_path, bin_path)
    return net, net.input_shape


def rss_mb():
    """Peak RSS of this process and of its largest finished child (the workers, once joined), in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def run(loader, step):
    """(images, seconds, seconds to the first batch done) of one pass over the loader."""
    t0 = time.perf_counter()
    first, images = None, 0
    for x, _ in loader:
        step(x)
        images += x.shape[0]
        if first is None:
            first = time.perf_counter() - t0
    return images, time.perf_counter() - t0, first


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('shards')
    ap.add_argument('out')
    ap.add_argument('--net')
    ap.add_argument('--bin')
    ap.add_argument('--zoo')
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    forward, shape = zoo_forward(a.zoo) if a.zoo else net_forward(a.net, a.bin)
    shards = sorted(os.path.join(a.shards, f) for f in os.listdir(a.shards) if f.endswith('.tar'))
    loader = DataLoader(TarShards(shards, shape), batch_size=a.batch, num_workers=a.workers)
    # Seeded random signs times 10 (Linf 10), as uap's bench; its exact values do not change the speed.
    h, w, c = shape
    v = (torch.randint(0, 2, (h, w, c), generator=torch.Generator().manual_seed(1)) * 20 - 10).float()

    def score(x):
        x = x.float()
        return forward(x).argmax(1), forward((x + v).clamp(0, 255)).argmax(1)

    with torch.inference_mode():
        images, seconds, first = run(loader, score)
    own, worker = rss_mb()  # before the decode-only pass, whose workers would count too
    _, decode_seconds, _ = run(loader, lambda x: None)
    out = {'images': images, 'seconds': seconds, 'msPerImage': 1000 * seconds / images, 'imagesPerSecond': images / seconds,
           'firstBatchMs': 1000 * first, 'peakRssMb': own + worker, 'rssMainMb': own, 'rssWorkerMb': worker,
           'decodeMsPerImage': 1000 * decode_seconds / images, 'decodeImagesPerSecond': images / decode_seconds,
           'workers': a.workers, 'batch': a.batch, 'threads': torch.get_num_threads(), 'shards': len(shards),
           'split': 'shard' if len(shards) >= max(1, a.workers) else 'sample', 'torch': torch.__version__}
    json.dump(out, open(a.out, 'w'))
    print(json.dumps(out))


if __name__ == '__main__':
    main()
