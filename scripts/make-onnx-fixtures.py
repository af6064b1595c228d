"""Exports the ONNX test fixtures: small seeded PyTorch models that together use every operator the
ONNX importer supports, at opsets 11 and 17 (and one rewritten to opset 18), with PyTorch's reference
logits and pixel-space input gradients. Run with Debian's python3-torch / python3-torchvision /
python3-onnx (not needed by CI or at run time):

    /usr/bin/python3 scripts/make-onnx-fixtures.py            # test/fixtures/onnx/*.onnx + *.json
    /usr/bin/python3 scripts/make-onnx-fixtures.py --zoo DIR  # full-size torchvision architectures for the bench

Pixels are NHWC in [0, 255]; each model normalises inside the reference with the card's mean / std,
so the gradients are taken with respect to the pixels, as uap computes them.
"""
import argparse, inspect, json, math, os, sys
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]


class Stem(nn.Module):
    """ResNet / MobileNet shapes: 7x7/2 conv, BN, ReLU, 3x3/2 max pool, residual block, grouped and
    depthwise convolutions, squeeze-excitation with hardsigmoid, hardswish, SiLU, ReLU6, dropout, GAP, linear."""
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.a = nn.Conv2d(8, 8, 3, 1, 1, bias=False); self.bna = nn.BatchNorm2d(8)
        self.b = nn.Conv2d(8, 8, 3, 1, 1, bias=False); self.bnb = nn.BatchNorm2d(8)
        self.grouped = nn.Conv2d(8, 12, 3, 2, 1, groups=4)
        self.dw = nn.Conv2d(12, 24, 3, 1, 1, groups=12)  # depth multiplier 2
        self.se1 = nn.Conv2d(24, 6, 1); self.se2 = nn.Conv2d(6, 24, 1)
        self.pw = nn.Conv2d(24, 16, 1)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.pool(x)
        x = F.relu(x + self.bnb(self.b(F.relu(self.bna(self.a(x))))))
        x = F.hardswish(self.grouped(x))
        x = F.relu6(self.dw(x))
        s = F.adaptive_avg_pool2d(x, 1)
        x = x * F.hardsigmoid(self.se2(F.relu(self.se1(s))))
        x = F.silu(self.pw(x))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(self.drop(x))


class LRN(torch.autograd.Function):
    """nn.LocalResponseNorm exported as ONNX's LRN operator (torch writes a decomposition with If and a
    3-D pooling instead). Odd sizes only: for even sizes PyTorch's window and ONNX's differ by one channel."""
    @staticmethod
    def forward(ctx, x, size, alpha, beta, k):
        return F.local_response_norm(x, size, alpha, beta, k)

    @staticmethod
    def symbolic(g, x, size, alpha, beta, k):
        return g.op('LRN', x, size_i=size, alpha_f=alpha, beta_f=beta, bias_f=k)


def lrn(x, size, alpha, beta, k):
    """ONNX's LRN operator in exports; PyTorch's own (differentiable) otherwise."""
    if torch.onnx.is_in_onnx_export():
        return LRN.apply(x, size, alpha, beta, k)
    return F.local_response_norm(x, size, alpha, beta, k)


class Inception(nn.Module):
    """GoogLeNet / CaffeNet shapes: LRN, ceil-mode max pooling, concatenated branches, average pooling
    3x3/1 pad 1 with and without the pads counted, leaky ReLU, PReLU, ELU, tanh, sigmoid, global max."""
    def __init__(self, classes=10):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 5, 2, 2)
        self.lrn = lambda t: lrn(t, 5, 1e-2, 0.75, 1.0)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.b1 = nn.Conv2d(8, 4, 1)
        self.b2 = nn.Conv2d(8, 4, 3, padding=1)
        self.b3 = nn.Conv2d(8, 4, 1)
        self.prelu = nn.PReLU(4)
        self.lrn2 = lambda t: lrn(t, 3, 0.5, 0.5, 2.0)
        self.fc = nn.Linear(12, classes)

    def forward(self, x):
        x = self.pool(self.lrn(F.relu(self.c1(x))))
        a = F.leaky_relu(self.b1(x), 0.1)
        b = self.prelu(self.b2(x))
        c = F.elu(self.b3(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)))
        c = torch.tanh(c) + torch.sigmoid(F.avg_pool2d(c, 3, 1, 1))
        y = self.lrn2(torch.cat([a, b, c], 1))
        y = torch.flatten(F.adaptive_max_pool2d(y, 1), 1)
        return self.fc(y)


class Shuffle(nn.Module):
    """ShuffleNet / DenseNet shapes: channel split (chunk), channel shuffle through shape arithmetic,
    batch norm that follows a concatenation (not folded), 2x2 average pooling, a mean over H and W."""
    def __init__(self, classes=10):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, 2, 1)
        self.branch = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, 1, 1, groups=4), nn.BatchNorm2d(4))
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 6, 1)
        self.fc = nn.Linear(6, classes)

    def shuffle(self, x, groups):
        n, c, h, w = x.size()
        x = x.view(n, groups, c // groups, h, w)
        x = torch.transpose(x, 1, 2).contiguous()
        return x.view(n, -1, h, w)

    def forward(self, x):
        x = F.relu(self.c1(x))
        a, b = x.chunk(2, dim=1)
        x = self.shuffle(torch.cat([a, self.branch(b)], 1), 2)
        x = F.avg_pool2d(F.relu(self.bn(x)), 2)
        x = self.c2(x)
        return self.fc(x.mean([2, 3]))


class ConvNeXtish(nn.Module):
    """ConvNeXt shapes: permute to channels-last, LayerNorm, Linear on images, GELU, layer scale,
    permute back, a channels-first LayerNorm (permute, normalise, permute), stochastic depth off."""
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 4, 4)
        self.ln0 = nn.LayerNorm(8, eps=1e-6)
        self.dw = nn.Conv2d(8, 8, 7, padding=3, groups=8)
        self.ln = nn.LayerNorm(8, eps=1e-6)
        self.pw1 = nn.Linear(8, 32)
        self.pw2 = nn.Linear(32, 8)
        self.gamma = nn.Parameter(torch.full((8,), 0.5))
        self.head_ln = nn.LayerNorm(8)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.ln0(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.pw2(F.gelu(self.pw1(self.ln(y)))) * self.gamma
        x = x + y.permute(0, 3, 1, 2)
        x = self.head_ln(x.mean([-2, -1]))
        return self.fc(x)


class ViTiny(nn.Module):
    """ViT shapes: patch embedding, flatten + transpose to tokens, class token expanded to the batch and
    concatenated, position embedding, LayerNorm, multi-head self-attention written out (reshape,
    permute, matmul, scaling, softmax), GELU MLP, the class token taken by index."""
    def __init__(self, classes=10, dim=16, heads=2, patch=8, size=32):
        super().__init__()
        self.heads = heads
        self.embed = nn.Conv2d(3, dim, patch, patch)
        tokens = (size // patch) ** 2
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.5)
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp1 = nn.Linear(dim, 2 * dim)
        self.mlp2 = nn.Linear(2 * dim, dim)
        self.ln3 = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        n, t, d = x.shape
        x = torch.cat([self.cls.expand(n, -1, -1), x], dim=1) + self.pos
        h = self.ln1(x)
        qkv = self.qkv(h).reshape(n, t + 1, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = torch.softmax((q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads), dim=-1)
        h = (att @ v).transpose(1, 2).reshape(n, t + 1, d)
        x = x + self.proj(h)
        x = x + self.mlp2(F.gelu(self.mlp1(self.ln2(x))))
        return self.head(self.ln3(x)[:, 0])


def TvViT(classes=10):
    """torchvision's VisionTransformer at a small size: its attention is nn.MultiheadAttention, which
    exports with the batch moved behind the tokens and folded into the heads ([N, B * heads, d])."""
    from torchvision.models.vision_transformer import VisionTransformer
    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                             num_classes=classes)


def TvSwin(classes=10):
    """torchvision's SwinTransformer at a small size: windows that fold the batch into B * windows, a
    shifted-window mask built from shapes (ScatterND, Mod), relative position biases, patch merging by
    strided slices."""
    from torchvision.models.swin_transformer import SwinTransformer
    return SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 2], window_size=[4, 4],
                           num_classes=classes)


class EinsumWindows(nn.Module):
    """MaxViT's attention as torchvision writes it: tokens partitioned into windows ([B, G, P, C]), multi-head
    q, k, v as [B, G, H, P, d], scores and weighted values by einsum ('bghid,bghjd->bghij', 'bghij,bghjd->bghid')."""
    def __init__(self, classes=10, dim=16, heads=2, window=4):
        super().__init__()
        self.heads, self.window = heads, window
        self.stem = nn.Conv2d(3, dim, 4, 4)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.stem(x)
        b, c, h, w = x.shape
        p = self.window
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p, c)
        qkv = self.qkv(x).reshape(b, x.shape[1], p * p, 3, self.heads, c // self.heads).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = torch.einsum('bghid,bghjd->bghij', q, k) * (c // self.heads) ** -0.5
        y = torch.einsum('bghij,bghjd->bghid', att.softmax(dim=-1), v)
        y = self.proj(y.permute(0, 1, 3, 2, 4).reshape(b, x.shape[1], p * p, c))
        return self.head((x + y).mean(dim=(1, 2)))


# MaxViT (Tu et al., "MaxViT: Multi-Axis Vision Transformer", 2022) as torchvision >= 0.15 builds it
# (`maxvit_t`). Debian's torchvision 0.14 predates it, so it is rebuilt here from the paper and
# torchvision's documented layout: the same layers in the same order, traced into the same operators
# (shape arithmetic on Shape outputs for the partitions, chunk, swapaxes, einsum with torchvision's
# spelled-out labels, a relative-position bias gathered from a table by a constant index).

def conv_norm_act(cin, cout, k, stride=1, groups=1, norm=True, act=True):
    """torchvision's Conv2dNormActivation as MaxViT uses it: a bias only where there is no batch norm."""
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=not norm)]
    layers += [nn.BatchNorm2d(cout, eps=1e-3)] if norm else []
    layers += [nn.GELU()] if act else []
    return nn.Sequential(*layers)


class MaxViTMBConv(nn.Module):
    """Pre-norm inverted bottleneck (x4), depthwise 3x3 (strided in a block's first layer), squeeze-excitation
    with SiLU (a quarter of the output width), and a shortcut that average-pools (3x3/2, padding counted)
    and projects where the shape changes."""
    def __init__(self, cin, cout, stride):
        super().__init__()
        mid = 4 * cout
        if stride != 1 or cin != cout:
            self.proj = nn.Sequential(*([nn.AvgPool2d(3, 2, 1)] if stride == 2 else []), nn.Conv2d(cin, cout, 1))
        else:
            self.proj = nn.Identity()
        from torchvision.ops.misc import SqueezeExcitation
        from collections import OrderedDict
        self.layers = nn.Sequential(OrderedDict(
            pre_norm=nn.BatchNorm2d(cin, eps=1e-3),
            conv_a=conv_norm_act(cin, mid, 1),
            conv_b=conv_norm_act(mid, mid, 3, stride, groups=mid),
            squeeze_excitation=SqueezeExcitation(mid, cout // 4, activation=nn.SiLU),
            conv_c=nn.Conv2d(mid, cout, 1)))

    def forward(self, x):
        return self.proj(x) + self.layers(x)


class MaxViTAttention(nn.Module):
    """Multi-head self-attention within each group of P tokens ([B, G, P, D]), scaled by D ** -0.5 (the
    feature width, as torchvision does), plus a learnt bias per head and relative offset."""
    def __init__(self, dim, head_dim, side):
        super().__init__()
        self.heads, self.head_dim = dim // head_dim, head_dim
        self.to_qkv = nn.Linear(dim, 3 * dim)
        self.merge = nn.Linear(dim, dim)
        self.scale = dim ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.randn((2 * side - 1) ** 2, self.heads) * 0.02)
        yx = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing='ij')).flatten(1)
        offset = yx[:, :, None] - yx[:, None, :] + side - 1
        self.register_buffer('relative_position_index', offset[0] * (2 * side - 1) + offset[1])

    def forward(self, x):
        B, G, P, D = x.shape
        q, k, v = torch.chunk(self.to_qkv(x), 3, dim=-1)
        q, k, v = (t.reshape(B, G, P, self.heads, self.head_dim).permute(0, 1, 3, 2, 4) for t in (q, k, v))
        scores = torch.einsum('B G H I D, B G H J D -> B G H I J', q, k * self.scale)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(P, P, -1)
        att = F.softmax(scores + bias.permute(2, 0, 1).unsqueeze(0), dim=-1)
        out = torch.einsum('B G H I J, B G H J D -> B G H I D', att, v).permute(0, 1, 3, 2, 4).reshape(B, G, P, D)
        return self.merge(out)


class MaxViTPartition(nn.Module):
    """Attention and MLP (pre-norm, residual) over windows ('window': side x side blocks of neighbours) or a
    grid ('grid': tokens grid / side apart, by partitioning into grid / side tiles and swapping axes)."""
    def __init__(self, dim, head_dim, side, kind, grid):
        super().__init__()
        self.tile = side if kind == 'window' else grid // side
        self.tiles = grid // self.tile
        self.swap = kind == 'grid'
        self.attn_layer = nn.Sequential(nn.LayerNorm(dim), MaxViTAttention(dim, head_dim, side), nn.Dropout(0.0))
        self.mlp_layer = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim),
                                       nn.Dropout(0.0))

    def forward(self, x):
        B, C, H, W = x.shape
        p = self.tile
        x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1).reshape(B, (H // p) * (W // p), p * p, C)
        if self.swap:
            x = torch.swapaxes(x, -2, -3)
        x = x + self.attn_layer(x)
        x = x + self.mlp_layer(x)
        if self.swap:
            x = torch.swapaxes(x, -2, -3)
        n = self.tiles
        return x.reshape(B, n, n, p, p, C).permute(0, 5, 1, 3, 2, 4).reshape(B, C, n * p, n * p)


class MaxViT(nn.Module):
    """maxvit_t's defaults (224 pixels, stem 64, widths 64-128-256-512, depths 2-2-5-2, heads of 32, windows
    of 7); each layer is an MBConv, window attention and grid attention; the head pools, normalises and
    runs Linear -> Tanh -> Linear."""
    def __init__(self, classes=1000, size=224, stem=64, widths=(64, 128, 256, 512), depths=(2, 2, 5, 2), head_dim=32,
                 side=7):
        super().__init__()
        from collections import OrderedDict
        self.stem = nn.Sequential(conv_norm_act(3, stem, 3, 2), conv_norm_act(stem, stem, 3, norm=False, act=False))
        grid, cin, blocks = (size - 1) // 2 + 1, stem, []
        for width, depth in zip(widths, depths):
            grid = (grid - 1) // 2 + 1
            layers = []
            for i in range(depth):
                layers.append(nn.Sequential(OrderedDict(
                    MBconv=MaxViTMBConv(cin if i == 0 else width, width, 2 if i == 0 else 1),
                    window_attention=MaxViTPartition(width, head_dim, side, 'window', grid),
                    grid_attention=MaxViTPartition(width, head_dim, side, 'grid', grid))))
            blocks.append(nn.Sequential(*layers))
            cin = width
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(cin), nn.Linear(cin, cin),
                                        nn.Tanh(), nn.Linear(cin, classes, bias=False))

    def forward(self, x):
        return self.classifier(self.blocks(self.stem(x)))


def MaxViTiny(classes=10):
    """MaxViT at a small size: 32 pixels, two blocks (8 x 8 and 4 x 4 grids), windows of 4 x 4."""
    return MaxViT(classes, size=32, stem=8, widths=(16, 32), depths=(1, 1), head_dim=8, side=4)


class DeiTiny(nn.Module):
    """A DeiT in timm's layout: class and distillation tokens, qkv reshaped to (B, N, 3, heads, d) and
    permuted (2, 0, 3, 1, 4), unbound into q, k, v, and the two heads averaged at inference."""
    def __init__(self, classes=10, dim=16, heads=2, patch=8, size=32, depth=2):
        super().__init__()
        self.heads = heads
        self.embed = nn.Conv2d(3, dim, patch, patch)
        tokens = (size // patch) ** 2
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.dist = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, tokens + 2, dim) * 0.5)
        self.blocks = nn.ModuleList(nn.ModuleDict({
            'ln1': nn.LayerNorm(dim, eps=1e-6), 'qkv': nn.Linear(dim, 3 * dim), 'proj': nn.Linear(dim, dim),
            'ln2': nn.LayerNorm(dim, eps=1e-6), 'fc1': nn.Linear(dim, 4 * dim), 'fc2': nn.Linear(4 * dim, dim)})
            for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)
        self.head_dist = nn.Linear(dim, classes)

    def attention(self, b, x):
        B, N, C = x.shape
        qkv = b['qkv'](x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        att = (q @ k.transpose(-2, -1)) * (C // self.heads) ** -0.5
        return b['proj']((att.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, N, C))

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        n = x.shape[0]
        x = torch.cat((self.cls.expand(n, -1, -1), self.dist.expand(n, -1, -1), x), dim=1) + self.pos
        for b in self.blocks:
            x = x + self.attention(b, b['ln1'](x))
            x = x + b['fc2'](F.gelu(b['fc1'](b['ln2'](x))))
        x = self.norm(x)
        return (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2


class HFViTiny(nn.Module):
    """A ViT in Hugging Face transformers' layout (ViTModel + ViTForImageClassification, written out here:
    no transformers package): separate query / key / value projections, transpose_for_scores as
    view(B, T, heads, d).permute(0, 2, 1, 3) with the view's sizes taken from x.size(), scores divided by
    sqrt(d), the context permuted back and viewed as (B, T, D), pre-norm layers, the class token's logits."""
    def __init__(self, classes=10, dim=16, heads=2, patch=8, size=32, depth=2):
        super().__init__()
        self.heads, self.d = heads, dim // heads
        self.patch = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, (size // patch) ** 2 + 1, dim) * 0.5)
        self.layers = nn.ModuleList(nn.ModuleDict({
            'before': nn.LayerNorm(dim, eps=1e-12), 'query': nn.Linear(dim, dim), 'key': nn.Linear(dim, dim),
            'value': nn.Linear(dim, dim), 'out': nn.Linear(dim, dim), 'after': nn.LayerNorm(dim, eps=1e-12),
            'intermediate': nn.Linear(dim, 4 * dim), 'output': nn.Linear(4 * dim, dim)}) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-12)
        self.classifier = nn.Linear(dim, classes)

    def scores(self, x):
        return x.view(x.size()[:-1] + (self.heads, self.d)).permute(0, 2, 1, 3)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls.expand(x.shape[0], -1, -1), x), dim=1) + self.pos
        for l in self.layers:
            h = l['before'](x)
            q, k, v = self.scores(l['query'](h)), self.scores(l['key'](h)), self.scores(l['value'](h))
            att = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.d)
            ctx = torch.matmul(nn.functional.softmax(att, dim=-1), v).permute(0, 2, 1, 3).contiguous()
            x = l['out'](ctx.view(ctx.size()[:-2] + (self.heads * self.d,))) + x
            x = l['output'](F.gelu(l['intermediate'](l['after'](x)))) + x
        return self.classifier(self.norm(x)[:, 0, :])


class Elementwise(nn.Module):
    """The remaining element-wise and shape operators: constant padding, sqrt, reciprocal, pow, exp, neg,
    division, subtraction, erf, clip, sum / max reductions, a softmax over channels, slicing, squeeze /
    unsqueeze, Gemm with transB, a LogSoftmax output (its input is taken as the logits)."""
    def __init__(self, classes=10):
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, 2)
        self.c2 = nn.Conv2d(6, 6, 3, 1, dilation=2, padding=2)
        self.fc = nn.Linear(12, classes)
        self.log_output = True

    def forward(self, x):
        x = F.pad(self.c1(x), (1, 2, 0, 1), value=0.5)
        x = self.c2(x)
        pos = torch.sqrt(x * x + 1.0)
        x = (x / pos) - torch.reciprocal(pos) + torch.pow(x, 2) * 0.1 - torch.exp(-pos)
        x = torch.clamp(x, -1.5, 2.0) + torch.erf(x) * 0.5
        x = x * torch.softmax(x, dim=1)
        x = x[:, :, 1:-1, ::1]
        s = x.sum(dim=[2, 3]).unsqueeze(-1)
        m = x.amax(dim=[2, 3]).unsqueeze(-1)
        z = self.fc(torch.cat([s, m], 1).squeeze(-1))
        return torch.log_softmax(z, dim=-1) if self.log_output else z


class ChannelsLast(nn.Module):
    """A graph that takes NHWC images (as TensorFlow exports do), pixels already in [0, 1]."""
    def __init__(self, classes=10):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3, 1, 1)
        self.fc = nn.Linear(4, classes)

    def forward(self, x):
        x = F.relu(self.c(x.permute(0, 3, 1, 2)))
        return self.fc(x.mean([2, 3]))


FIXTURES = [
    # name, class, opset, dynamic batch, input size, NHWC input
    ('stem-op11', Stem, 11, True, 32, False),
    ('stem-op17', Stem, 17, False, 32, False),
    ('inception-op11', Inception, 11, False, 32, False),
    ('inception-op17', Inception, 17, True, 32, False),
    ('shuffle-op11', Shuffle, 11, True, 32, False),
    ('shuffle-op17', Shuffle, 17, False, 32, False),
    ('convnext-op11', ConvNeXtish, 11, True, 32, False),
    ('convnext-op17', ConvNeXtish, 17, True, 32, False),
    ('vit-op11', ViTiny, 11, True, 32, False),
    ('vit-op17', ViTiny, 17, False, 32, False),
    ('elementwise-op11', Elementwise, 11, False, 32, False),
    ('elementwise-op17', Elementwise, 17, True, 32, False),
    ('elementwise-op18', Elementwise, 18, True, 32, False),
    ('channels-last-op13', ChannelsLast, 13, True, 32, True),
    ('tvvit-op13', TvViT, 13, True, 32, False),
    ('tvvit-op17', TvViT, 17, True, 32, False),
    ('deit-op13', DeiTiny, 13, True, 32, False),
    ('deit-op17', DeiTiny, 17, False, 32, False),
    ('tvswin-op13', TvSwin, 13, True, 32, False),
    ('tvswin-op17', TvSwin, 17, True, 32, False),
    ('einsum-op13', EinsumWindows, 13, True, 32, False),
    ('hfvit-op14', HFViTiny, 14, True, 32, False),
    ('hfvit-op17', HFViTiny, 17, False, 32, False),
    ('maxvit-op13', MaxViTiny, 13, True, 32, False),
    ('maxvit-op17', MaxViTiny, 17, True, 32, False),
]
# Exports uap refuses, each with the reason its message must give (no reference values: test/onnx-import.test.ts).
REFUSED = [
    # A fixed batch of 1 hides where attention folds the batch: the message asks for a dynamic batch axis.
    ('tvvit-batch1-op17', TvViT, 17, False, 32, False),
]


def randomize(model, seed):
    """Seeded weights, and batch-norm statistics that are not the identity (so folding is tested)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 / math.sqrt(max(1, p[0].numel())) if p.dim() > 1 else 0.3) + (1.0 if name.endswith('gamma') else 0))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def to_opset18(path):
    """Rewrites an opset-17 export as opset 18: reduction axes move from attributes to inputs."""
    import onnx
    from onnx import helper, numpy_helper
    m = onnx.load(path)
    for node in m.graph.node:
        if node.op_type in ('ReduceMean', 'ReduceMax', 'ReduceMin', 'ReduceProd', 'ReduceL2'):
            axes = [a for a in node.attribute if a.name == 'axes']
            if axes:
                name = node.output[0] + '_axes'
                m.graph.initializer.append(numpy_helper.from_array(np.array(list(axes[0].ints), dtype=np.int64), name))
                node.input.append(name)
                node.attribute.remove(axes[0])
    for o in m.opset_import:
        if o.domain in ('', 'ai.onnx'):
            o.version = 18
    onnx.save(m, path)


def export(model, path, opset, dynamic, size, nhwc):
    shape = (1, size, size, 3) if nhwc else (1, 3, size, size)
    x = torch.rand(shape)
    axes = {'input': {0: 'N'}, 'logits': {0: 'N'}} if dynamic else None
    torch.onnx.export(model, x, path, opset_version=min(opset, 17), input_names=['input'], output_names=['logits'], dynamic_axes=axes)
    if opset == 18:
        to_opset18(path)


def reference(model, pixels, nhwc, dy):
    """Logits and d(sum(dy * logits))/d pixels, pixels NHWC in [0, 255]."""
    px = torch.tensor(pixels, dtype=torch.float32, requires_grad=True)
    if nhwc:
        inp = px / 255.0
    else:
        inp = (px - torch.tensor(MEAN)) / torch.tensor(STD)
        inp = inp.permute(0, 3, 1, 2)
    logits = model(inp)
    (logits * torch.tensor(dy)).sum().backward()
    return logits.detach().numpy(), px.grad.numpy()


def make_fixtures(out, only=None):
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    for k, (name, cls, opset, dynamic, size, nhwc) in enumerate(FIXTURES + REFUSED):
        if only and name not in only:
            continue
        torch.manual_seed(k)
        model = randomize(cls(), 100 + k)
        path = os.path.join(out, name + '.onnx')
        export(model, path, opset, dynamic, size, nhwc)
        if k >= len(FIXTURES):
            print(f'{name}: {os.path.getsize(path)} bytes (refused: no reference values)')
            continue
        rng = np.random.default_rng(k)
        pixels = rng.integers(0, 256, size=(2, size, size, 3)).astype(np.float32)
        classes = 10
        dy = rng.standard_normal((2, classes)).astype(np.float32)
        # A model ending in LogSoftmax is imported up to its input: the reference gives those logits.
        if hasattr(model, 'log_output'):
            model.log_output = False
        logits, grad = reference(model, pixels, nhwc, dy)
        card = {'inputShape': [size, size, 3], 'numClasses': classes, 'opset': opset, 'dynamicBatch': dynamic,
                'preprocess': {'scale': 1 / 255} if nhwc else {'mean': MEAN, 'std': STD},
                'pixels': pixels.astype(np.uint8).reshape(-1).tolist(), 'dy': dy.reshape(-1).tolist(),
                'logits': logits.reshape(-1).tolist(), 'dx': grad.reshape(-1).tolist()}
        with open(os.path.join(out, name + '.json'), 'w') as f:
            json.dump(card, f)
        print(f'{name}: {os.path.getsize(path)} bytes')


ZOO = ['resnet18', 'mobilenet_v3_small', 'efficientnet_b0', 'googlenet', 'densenet121', 'convnext_tiny', 'vgg11_bn',
       'shufflenet_v2_x1_0', 'regnet_y_400mf', 'mnasnet1_0', 'squeezenet1_1', 'mobilenet_v2', 'vit_b_16', 'resnet50', 'vgg16',
       'swin_t', 'maxvit_t']


def zoo_model(name):
    """A torchvision architecture with seeded random weights (no pretrained weights offline): the same
    numbers whenever it is built, so bench/torch_zoo.py times the very model the zoo's .onnx holds."""
    k = ZOO.index(name)
    torch.manual_seed(k)
    kwargs = {'aux_logits': False, 'init_weights': True} if name == 'googlenet' else {}
    return calibrate(randomize(zoo_architecture(name, **kwargs), 1000 + k), 2000 + k)


def zoo_architecture(name, **kwargs):
    """A zoo architecture untrained: torchvision's builder, or the rebuild here where the installed
    torchvision lacks it (REBUILT)."""
    import torchvision
    build = getattr(torchvision.models, name, None)
    return build(weights=None, **kwargs) if build else REBUILT[name](**kwargs)


# Zoo architectures the installed torchvision lacks, rebuilt above.
REBUILT = {'maxvit_t': MaxViT}


def calibrate(model, seed):
    """Batch-norm statistics measured on seeded smooth images, as training would leave them: random
    weights with arbitrary statistics shrink the signal layer by layer until input gradients underflow
    (1e-20 and less on EfficientNet), which would make comparing them with PyTorch's meaningless."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        return model
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(16, 3, 14, 14, generator=g)
    x = (nn.functional.interpolate(coarse, size=224, mode='bilinear', align_corners=False) * 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the calibration batch
    model.train()
    with torch.no_grad():
        torch.manual_seed(seed)  # dropout in train mode draws from the global generator
        model(x)
    return model.eval()


# PyTorch 2.9 and later export through torch.export (dynamo) by default, at another opset and with
# other graphs: the zoo is the TorchScript exporter's, as PyTorch 1.13 to 2.8 write it.
TORCHSCRIPT_EXPORT = {'dynamo': False} if 'dynamo' in inspect.signature(torch.onnx.export).parameters else {}


def make_zoo(out, names):
    """Full-size torchvision architectures (zoo_model), exported at opset 13 with a dynamic batch, and
    their weights as a PyTorch state dict beside each (NAME.pt)."""
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(2)
    for name in names:
        path = os.path.join(out, name + '.onnx')
        weights = os.path.join(out, name + '.pt')
        if os.path.exists(path) and os.path.exists(weights):
            continue
        model = zoo_model(name)
        # The same weights as a state dict: what a PyTorch user loads (bench/torch_load.py times it).
        torch.save(model.state_dict(), weights)
        if os.path.exists(path):
            continue
        x = torch.rand(1, 3, 224, 224)
        torch.onnx.export(model, x, path, opset_version=13, input_names=['input'], output_names=['logits'],
                          dynamic_axes={'input': {0: 'N'}, 'logits': {0: 'N'}}, **TORCHSCRIPT_EXPORT)
        print(f'{name}: {os.path.getsize(path) / 1e6:.1f} MB', flush=True)


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'onnx'))
    ap.add_argument('--zoo', help='folder for the full-size architectures (the bench reads them)')
    ap.add_argument('--models', default=','.join(ZOO))
    ap.add_argument('--only', help='comma-separated fixture names to export (default: all)')
    a = ap.parse_args()
    if a.zoo:
        make_zoo(a.zoo, a.models.split(','))
    else:
        make_fixtures(a.out, a.only.split(',') if a.only else None)
