"""A small ResNet trained on Fashion-MNIST in PyTorch and exported with torch.onnx.export: a real,
trained PyTorch classifier for the bench's ONNX import path (bench:methods), made offline from Debian's
dataset-fashion-mnist. Never run at uap's run time or in CI.

    /usr/bin/python3 scripts/train-fashion-resnet.py OUT_DIR [--epochs 3]

Writes OUT_DIR/fashion-resnet.onnx (opset 17, dynamic batch) and OUT_DIR/fashion-resnet.card.json
(pixels / 255, 28x28x1 NCHW as PyTorch takes it), and prints the test accuracy.
"""
import argparse
import gzip
import json
import os
import time

import numpy as np
import torch
from torch import nn

DATA = '/usr/share/datasets/fashion-mnist'
LABELS = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']


def idx(name, offset):
    with gzip.open(os.path.join(DATA, name)) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def split(kind):
    x = idx(f'{kind}-images-idx3-ubyte.gz', 16).reshape(-1, 1, 28, 28)
    y = idx(f'{kind}-labels-idx1-ubyte.gz', 8)
    return torch.from_numpy(x.astype(np.float32) / 255), torch.from_numpy(y.astype(np.int64))


class Block(nn.Module):
    """torchvision's BasicBlock: two 3x3 convolutions with batch-norm, a projected shortcut when the shape changes."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential() if stride == 1 and cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.short(x))


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layers = nn.Sequential(Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('out')
    ap.add_argument('--epochs', type=int, default=3)
    a = ap.parse_args()
    torch.manual_seed(0)
    xs, ys = split('train')
    xt, yt = split('t10k')
    model = ResNet()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    t0 = time.time()
    for epoch in range(a.epochs):
        model.train()
        perm = torch.randperm(len(xs))
        for s in range(0, len(xs), 128):
            b = perm[s:s + 128]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xs[b]), ys[b]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = sum((model(xt[s:s + 1000]).argmax(1) == yt[s:s + 1000]).sum().item() for s in range(0, len(xt), 1000)) / len(xt)
        print(f'epoch {epoch + 1}: test accuracy {acc:.4f} ({time.time() - t0:.0f} s)', flush=True)
    os.makedirs(a.out, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(a.out, 'fashion-resnet.pt'))  # the trained weights, whatever the export does
    onnx_file = os.path.join(a.out, 'fashion-resnet.onnx')
    torch.onnx.export(model, torch.rand(1, 1, 28, 28), onnx_file, opset_version=17, input_names=['x'], output_names=['logits'],
                      dynamic_axes={'x': {0: 'N'}, 'logits': {0: 'N'}})
    card = {
        'name': 'fashion-resnet', 'format': 'onnx', 'model': 'fashion-resnet.onnx', 'inputShape': [28, 28, 1], 'numClasses': 10,
        'preprocess': {'scale': 1 / 255, 'offset': 0}, 'labels': LABELS, 'labelSpace': 'own',
        'measured': {'testAccuracy': acc, 'trainedBy': 'scripts/train-fashion-resnet.py', 'epochs': a.epochs, 'seconds': round(time.time() - t0, 1)},
    }
    with open(os.path.join(a.out, 'fashion-resnet.card.json'), 'w') as f:
        json.dump(card, f, indent=1)
    print(f'written {onnx_file} and its card; test accuracy {acc:.4f}')


if __name__ == '__main__':
    main()
