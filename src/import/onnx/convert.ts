import { UsageError } from '../../errors.js';
import { SLICE_END, type Activation, type Net, type NetNode, type NodeOp, type Padding, type Weights } from '../../engine/net.js';
import { OPS } from '../../engine/ops/registry.js';
import { windowGeometry } from '../../engine/ops/geometry.js';
import type { Shape } from '../../engine/ops/types.js';
import { axesOf, BATCH, broadcastDims, fold, FOLDED, size, sliceIndices, tensor, transposeTensor } from './fold.js';
import type { AttrValue, OnnxModel, OnnxNodeInfo, Tensor } from './parse.js';
import { optimizeNet } from '../../engine/optimize.js';
import {
  canonicalPlan,
  describeDims,
  identityGroups,
  onnxDims,
  plainPlan,
  regroupPlan,
  targetDims as groupedTarget,
  type Groups,
  type Plan,
} from './batchGroups.js';
import type { ImageShape } from '../../math/imageShape.js';

/**
 * Translates an ONNX graph into the engine's Net. ONNX image models are NCHW; the Net is NHWC where it
 * convolves. Each ONNX value is either a constant (folded here) or a Net value in one of two layouts:
 * 'nhwc' (a rank-4 ONNX value whose Net value is its NHWC transpose: everything convolutions touch)
 * or 'plain' (the Net value is the ONNX value itself: tokens, matrices, what reshapes produce).
 * Ops that care about axis order (reshape, transpose, matmul, layer norm) see plain values; a transpose
 * node is added only where a value must change layout, and transposes that undo a layout change (as
 * ConvNeXt's permutes do) cost nothing.
 */

type Layout = 'nhwc' | 'plain';
interface Dyn {
  net: string;
  layout: Layout;
  /**
   * A value whose batch axis is moved or folded into another axis (attention; batchGroups.ts): ONNX
   * axis i is the row-major product of Net axes groups[i], the Net value batch first as always (plain
   * values only). The ops attention uses read it as it is; anything else needs the batch first again.
   */
  groups?: Groups;
}
type Val = { t: Tensor } | { d: Dyn };

/** ONNX axis -> Net axis of an 'nhwc' value (N C H W -> N H W C positions), and back. */
const NET_AXIS = [0, 3, 1, 2];
const ONNX_AXIS = [0, 2, 3, 1];

const ACTIVATIONS: Record<string, Activation> = {
  Relu: 'relu',
  Sigmoid: 'sigmoid',
  Tanh: 'tanh',
  Erf: 'erf',
  Sqrt: 'sqrt',
  Reciprocal: 'reciprocal',
  Exp: 'exp',
  Neg: 'neg',
  HardSwish: 'hardSwish',
};
const BINARY: Record<string, 'add' | 'sub' | 'mul' | 'div'> = { Add: 'add', Sub: 'sub', Mul: 'mul', Div: 'div' };

const f32 = (t: Tensor): Float32Array => (t.data instanceof Float32Array ? t.data : Float32Array.from(t.data));
const w = (t: Tensor, shape = t.dims): Weights => ({ data: f32(t), shape });
const scaled = (t: Tensor, k: number): Float32Array => {
  const out = new Float32Array(t.data.length);
  for (let i = 0; i < out.length; i++) out[i] = t.data[i] * k;
  return out;
};
const norm = (a: number, r: number) => (a < 0 ? a + r : a);
const isIdentity = (p: number[]) => p.every((v, i) => v === i);

class Converter {
  readonly nodes: NetNode[] = [];
  private readonly vals = new Map<string, Val>();
  private readonly shapes = new Map<string, Shape>();
  private readonly converted = new Map<string, string>();
  private count = 0;
  /** A value every image has (for the batch size of constants repeated per image). */
  private readonly anchor: string;

  constructor(
    private readonly m: OnnxModel,
    private readonly file: string,
    input: { onnx: string; net: string; shape: Shape; layout: Layout },
    /** The model states batch 1: a leading 1 in a reshape target is the batch. */
    private readonly fixedBatch1: boolean,
  ) {
    this.shapes.set(input.net, input.shape);
    this.vals.set(input.onnx, { d: { net: input.net, layout: input.layout } });
    this.anchor = input.net;
    for (const [name, t] of m.initializers) this.vals.set(name, { t });
  }

  fail(node: OnnxNodeInfo, what: string): never {
    throw new UsageError(`${this.file}: node ${node.name} (${node.opType}, opset ${this.m.opset}): ${what}`);
  }

  /** Adds a Net node; its shape comes from the op's own rule (a misfit names the ONNX node). */
  private emit(node: OnnxNodeInfo, op: NodeOp, inputs: string[]): string {
    const name = `${node.name}#${this.count++}`;
    try {
      const shape = (OPS[op.kind].shape as (o: NodeOp, xs: Shape[]) => Shape)(
        op,
        inputs.map((i) => this.shapes.get(i)!),
      );
      this.shapes.set(name, shape);
    } catch (e) {
      this.fail(node, (e as Error).message);
    }
    this.nodes.push({ name, inputs, op });
    return name;
  }

  /** ONNX dims (without batch) of a Net value held in `layout`. */
  private dims(d: Dyn): number[] {
    const s = this.shapes.get(d.net)!;
    return d.layout === 'nhwc' ? [s[2], s[0], s[1]] : s;
  }

  /** The Net value of d in `layout` (rank-4 values only change), adding a transpose once. */
  private as(node: OnnxNodeInfo, d: Dyn, layout: Layout): string {
    if (d.layout === layout || this.dims(d).length !== 3) return d.net;
    const key = `${d.net}|${layout}`;
    let v = this.converted.get(key);
    if (!v) {
      v = this.emit(node, { kind: 'transpose', perm: layout === 'plain' ? NET_AXIS : ONNX_AXIS }, [d.net]);
      this.converted.set(key, v);
    }
    return v;
  }

  private netAxis(d: Dyn, onnxAxis: number): number {
    const a = norm(onnxAxis, this.dims(d).length + 1);
    return d.layout === 'nhwc' && this.dims(d).length === 3 ? NET_AXIS[a] : a;
  }

  /** A constant broadcast against d (ONNX rules), laid out as d's Net value. */
  private operand(node: OnnxNodeInfo, t: Tensor, d: Dyn): Weights {
    const full = [1, ...this.dims(d)];
    let out: number[];
    try {
      out = broadcastDims(full, t.dims);
    } catch {
      this.fail(node, `constant [${t.dims}] does not broadcast against [N, ${this.dims(d)}]`);
    }
    if (out.join() !== full.join()) this.fail(node, `a constant [${t.dims}] that enlarges the value [N, ${this.dims(d)}] is not supported`);
    if (d.layout !== 'nhwc' || full.length !== 4 || t.dims.length === 0) return w(t);
    const t4 = { ...t, dims: [...new Array(4 - t.dims.length).fill(1), ...t.dims] };
    const nhwc = transposeTensor(t4, ONNX_AXIS);
    return w(nhwc);
  }

  attr(node: OnnxNodeInfo, name: string, fallback: number): number;
  attr(node: OnnxNodeInfo, name: string, fallback: string): string;
  attr(node: OnnxNodeInfo, name: string, fallback: number[]): number[];
  attr(node: OnnxNodeInfo, name: string, fallback: AttrValue): AttrValue {
    return node.attrs.get(name) ?? fallback;
  }

  private set(name: string, v: Val): void {
    this.vals.set(name, v);
  }

  /** An input as stored: a pending batch-moving transpose stays pending. */
  private raw(node: OnnxNodeInfo, name: string): Val | undefined {
    if (!name) return undefined;
    const v = this.vals.get(name);
    if (!v) this.fail(node, `input ${name} is not produced by any earlier node`);
    return v;
  }

  /** An input with the batch axis first (refused when it is moved or folded into another axis). */
  private val(node: OnnxNodeInfo, name: string): Val | undefined {
    const v = this.raw(node, name);
    if (!v || !('d' in v) || !v.d.groups) return v;
    this.fail(
      node,
      `its input has the batch axis moved or folded into another axis (${this.describe(v.d)}); this operator needs the batch first (attention's reshapes, transposes, matrix products, softmax and slices take it as it is)`,
    );
  }

  private describe(d: Dyn): string {
    return describeDims(d.groups!, this.shapes.get(d.net)!);
  }

  /** A value's Net value and groups (a plain value's are its axes). */
  private groupsOf(node: OnnxNodeInfo, d: Dyn): { net: string; groups: Groups } {
    if (d.groups) return { net: d.net, groups: d.groups };
    const net = this.as(node, d, 'plain');
    return { net, groups: identityGroups(this.shapes.get(net)!.length + 1) };
  }

  /** The transpose and reshape a plan asks for. */
  private apply(node: OnnxNodeInfo, net: string, plan: Plan): string {
    let v = net;
    if (plan.order) v = this.emit(node, { kind: 'transpose', perm: plan.order }, [v]);
    if (plan.shape) v = this.emit(node, { kind: 'reshape', shape: plan.shape }, [v]);
    return v;
  }

  /** A grouped value: plain once the batch is ONNX axis 0 alone again, else kept grouped. */
  private grouped(node: OnnxNodeInfo, net: string, groups: Groups): Dyn {
    const plain = plainPlan(groups, this.shapes.get(net)!);
    return plain ? { net: this.apply(node, net, plain), layout: 'plain' } : { net, layout: 'plain', groups };
  }

  /** The canonical Net value of d (batchGroups.ts: canonicalPlan) and its groups. */
  private canonical(node: OnnxNodeInfo, d: Dyn): { net: string; groups: Groups } {
    const g = this.groupsOf(node, d);
    const plan = canonicalPlan(g.groups, this.shapes.get(g.net)!);
    return { net: this.apply(node, g.net, plan), groups: plan.groups };
  }

  /** The one Net axis of ONNX axis a of a canonical value, refused when it holds the batch. */
  private single(node: OnnxNodeInfo, c: { net: string; groups: Groups }, a: number, what: string): number {
    const g = c.groups[a];
    if (g.length !== 1 || g[0] === 0)
      this.fail(node, `${what} along an axis that holds the batch (${describeDims(c.groups, this.shapes.get(c.net)!)}) is not supported`);
    return g[0];
  }

  /** Input i when it is a grouped value (its batch moved or folded), as stored. */
  private groupedInput(node: OnnxNodeInfo, i: number): (Dyn & { groups: Groups }) | undefined {
    const v = this.raw(node, node.inputs[i]);
    return v && 'd' in v && v.d.groups ? (v.d as Dyn & { groups: Groups }) : undefined;
  }

  /**
   * Takes index range [start, end) of ONNX axis a of a grouped value (on its Net axis) and, when
   * `drop`, removes that axis.
   */
  private lazyTake(node: OnnxNodeInfo, d: Dyn & { groups: Groups }, a: number, start: number, end: number, drop: boolean): Dyn {
    const g = d.groups[a];
    if (g.length !== 1 || g[0] === 0) this.fail(node, `taking part of an axis that holds the batch (${this.describe(d)}) is not supported`);
    const p = g[0];
    const shape = this.shapes.get(d.net)!;
    let net =
      start === 0 && end === shape[p - 1] ? d.net : this.emit(node, { kind: 'slice', axis: p, begin: start, end, step: 1 }, [d.net]);
    if (!drop) return this.grouped(node, net, d.groups);
    if (end - start !== 1) this.fail(node, 'only a single index can be dropped');
    net = this.emit(node, { kind: 'reshape', shape: shape.filter((_, i) => i !== p - 1) }, [net]);
    return this.grouped(
      node,
      net,
      d.groups.filter((_, i) => i !== a).map((q) => q.map((x) => (x > p ? x - 1 : x))),
    );
  }

  /** The size of ONNX axis a of a grouped value, when it is one Net axis. */
  private groupedDim(d: Dyn & { groups: Groups }, a: number): number {
    const g = d.groups[a];
    return g.length === 1 && g[0] !== 0 ? this.shapes.get(d.net)![g[0] - 1] : NaN;
  }

  /** A reshape of a grouped value, or one whose target folds the batch into another axis (batchGroups.ts: regroupPlan). */
  private regroup(node: OnnxNodeInfo, d: Dyn, target: number[]): Dyn {
    const g = this.groupsOf(node, d);
    const shape = this.shapes.get(g.net)!;
    const from = describeDims(g.groups, shape);
    const dims = groupedTarget(target, g.groups, shape, this.attr(node, 'allowzero', 0) === 1);
    if (!dims)
      this.fail(
        node,
        this.fixedBatch1
          ? `the graph fixes the batch at 1, and this reshape of ${from} to [${target.join(', ')}] folds the batch into other axes where uap cannot tell which; export with a dynamic batch axis (torch.onnx.export(..., dynamic_axes={'input': {0: 'N'}, 'logits': {0: 'N'}}))`
          : `the target shape [${target.join(', ')}] of ${from} does not hold the batch once, as one factor of one axis`,
      );
    const plan = regroupPlan(g.groups, shape, dims);
    if (typeof plan === 'string') this.fail(node, `cannot reshape ${from} to [${target.join(', ')}]: ${plan}`);
    return this.grouped(node, this.apply(node, g.net, plan), plan.groups);
  }

  private dyn(node: OnnxNodeInfo, i: number, what = 'input'): Dyn {
    const v = this.val(node, node.inputs[i]);
    if (!v || !('d' in v)) this.fail(node, `${what} ${i} must be computed from the image (a constant is not supported there)`);
    return v.d;
  }

  private constant(node: OnnxNodeInfo, i: number, what: string): Tensor {
    const v = this.val(node, node.inputs[i]);
    if (!v || !('t' in v)) this.fail(node, `${what} (input ${i}) must be a constant`);
    return v.t;
  }

  private optConstant(node: OnnxNodeInfo, i: number): Tensor | undefined {
    const v = node.inputs[i] ? this.val(node, node.inputs[i]) : undefined;
    if (v && !('t' in v)) this.fail(node, `input ${i} must be a constant`);
    return v?.t;
  }

  /** Output dims of a reshape to ONNX dims `target` (batch excluded). */
  private reshapeTo(node: OnnxNodeInfo, d: Dyn, target: number[]): Dyn {
    const dims = this.dims(d);
    if (target.join() === dims.join()) return d;
    if (size(target) !== size(dims)) this.fail(node, `cannot reshape [N, ${dims}] to [N, ${target}]`);
    // A [C, 1, 1] value has the same element order in both layouts: no transpose needed.
    const src = d.layout === 'nhwc' && dims.length === 3 && dims[1] * dims[2] !== 1 ? this.as(node, d, 'plain') : d.net;
    return { net: this.emit(node, { kind: 'reshape', shape: target }, [src]), layout: 'plain' };
  }

  /** A Net padding from ONNX pads / auto_pad for a window of `k` taps. */
  private padding(node: OnnxNodeInfo, inHW: number[], k: number[], s: number[], dil: number[]): Padding {
    const auto = this.attr(node, 'auto_pad', 'NOTSET');
    if (auto === 'VALID') return 'valid';
    if (auto === 'SAME_UPPER') return 'same';
    let explicit: [[number, number], [number, number]];
    if (auto === 'SAME_LOWER') {
      const same = windowGeometry(inHW, k, s, 'same', dil).pads;
      explicit = [
        [same[0][1], same[0][0]],
        [same[1][1], same[1][0]],
      ];
    } else {
      const p = this.attr(node, 'pads', [0, 0, 0, 0]);
      if (p.length !== 4) this.fail(node, `only 2-D windows are supported (pads ${JSON.stringify(p)})`);
      explicit = [
        [p[0], p[2]],
        [p[1], p[3]],
      ];
    }
    if (explicit.flat().every((v) => v === 0)) return 'valid';
    const same = windowGeometry(inHW, k, s, 'same', dil).pads;
    return JSON.stringify(same) === JSON.stringify(explicit) ? 'same' : explicit;
  }

  private window(node: OnnxNodeInfo) {
    const k = this.attr(node, 'kernel_shape', [] as number[]);
    if (k.length !== 2) this.fail(node, `only 2-D windows are supported (kernel_shape ${JSON.stringify(k)})`);
    return { k, s: this.attr(node, 'strides', [1, 1]), dil: this.attr(node, 'dilations', [1, 1]) };
  }

  act(node: OnnxNodeInfo, act: Activation): void {
    const x = this.dyn(node, 0);
    this.set(node.outputs[0], { d: { net: this.emit(node, { kind: 'act', act }, [x.net]), layout: x.layout } });
  }

  convert(node: OnnxNodeInfo): void {
    if (node.domain && node.domain !== 'ai.onnx') this.fail(node, `operators of domain ${node.domain} are not supported`);
    const ins = node.inputs.map((i) => this.raw(node, i));
    const op = node.opType;
    // Everything known at import time is computed now.
    if (op === 'Shape' && ins[0] && 'd' in ins[0]) {
      const d = ins[0].d;
      const dims = d.groups ? onnxDims(d.groups, this.shapes.get(d.net)!) : [BATCH, ...this.dims(d)];
      const start = norm(this.attr(node, 'start', 0), dims.length);
      const end = node.attrs.has('end') ? norm(this.attr(node, 'end', dims.length), dims.length) : dims.length;
      this.set(node.outputs[0], { t: tensor('int', [end - start], dims.slice(start, end)) });
      return;
    }
    if (ins.every((v) => !v || 't' in v)) {
      const out = fold(
        node,
        ins.map((v) => (v && 't' in v ? v.t : undefined)),
      );
      if (out) {
        out.forEach((t, i) => node.outputs[i] && this.set(node.outputs[i], { t }));
        return;
      }
    }
    const handler = HANDLERS[op];
    if (!handler) this.fail(node, `this operator is not supported (supported: ${SUPPORTED_OPS.join(', ')})`);
    handler(this, node);
  }

  /** The input as it is: Identity, Dropout (inference), Cast to a float type. */
  same(node: OnnxNodeInfo): void {
    if (node.opType === 'Cast' && ![1, 10, 11, 16].includes(this.attr(node, 'to', 1)))
      this.fail(node, 'only casts to floating point are supported on image values');
    this.set(node.outputs[0], { d: this.groupedInput(node, 0) ?? this.dyn(node, 0) });
  }

  clip(node: OnnxNodeInfo): void {
    const lo = node.attrs.has('min') ? this.attr(node, 'min', -Infinity) : (this.optConstant(node, 1)?.data[0] ?? -Infinity);
    const hi = node.attrs.has('max') ? this.attr(node, 'max', Infinity) : (this.optConstant(node, 2)?.data[0] ?? Infinity);
    this.act(node, lo === 0 && hi === 6 ? 'relu6' : lo === 0 && hi === Infinity ? 'relu' : { clip: [lo, hi] });
  }

  pow(node: OnnxNodeInfo): void {
    const p = this.constant(node, 1, 'the exponent');
    if (p.data.length !== 1) this.fail(node, 'only a scalar exponent is supported');
    const e = p.data[0];
    if (e === 1) this.set(node.outputs[0], { d: this.dyn(node, 0) });
    else this.act(node, e === 0.5 ? 'sqrt' : { pow: e });
  }

  prelu(node: OnnxNodeInfo): void {
    const x = this.dyn(node, 0);
    this.set(node.outputs[0], {
      d: {
        net: this.emit(node, { kind: 'prelu', slope: this.operand(node, this.constant(node, 1, 'the slope'), x) }, [x.net]),
        layout: x.layout,
      },
    });
  }

  /** Sum and Mean of any number of inputs. */
  sum(node: OnnxNodeInfo): void {
    const xs = node.inputs.map((_, i) => this.dyn(node, i));
    const layout: Layout = xs.some((x) => x.layout === 'nhwc') ? 'nhwc' : 'plain';
    let y =
      xs.length === 1
        ? xs[0].net
        : this.emit(
            node,
            { kind: 'binary', op: 'add', act: 'linear' },
            xs.map((x) => this.as(node, x, layout)),
          );
    if (node.opType === 'Mean')
      y = this.emit(
        node,
        {
          kind: 'binary',
          op: 'mul',
          act: 'linear',
          constant: { weights: { data: Float32Array.of(1 / xs.length), shape: [] }, first: false },
        },
        [y],
      );
    this.set(node.outputs[0], { d: { net: y, layout: xs.length === 1 ? xs[0].layout : layout } });
  }

  globalPool(node: OnnxNodeInfo): void {
    const x = this.dyn(node, 0);
    if (this.dims(x).length !== 3) this.fail(node, 'only [N, C, H, W] inputs are supported');
    const y = this.emit(
      node,
      { kind: 'reduce', mode: node.opType === 'GlobalAveragePool' ? 'mean' : 'max', axes: [1, 2], keepDims: true },
      [this.as(node, x, 'nhwc')],
    );
    this.set(node.outputs[0], { d: { net: y, layout: 'nhwc' } });
  }

  softmax(node: OnnxNodeInfo): void {
    const g = this.groupedInput(node, 0);
    const grouped = g && this.canonical(node, g);
    const x = grouped ? { net: grouped.net, layout: 'plain' as const } : this.dyn(node, 0);
    const r = grouped ? grouped.groups.length : this.dims(x).length + 1;
    const axis = norm(this.attr(node, 'axis', this.m.opset < 13 ? 1 : -1), r);
    // Before opset 13 softmax flattened the axes from `axis` on: the same when axis is the last.
    if (this.m.opset < 13 && axis !== r - 1) this.fail(node, 'softmax over several axes (opset < 13, axis not last) is not supported');
    if (grouped) {
      const y = this.emit(node, { kind: 'softmax', axis: this.single(node, grouped, axis, 'softmax'), log: node.opType === 'LogSoftmax' }, [
        grouped.net,
      ]);
      return this.set(node.outputs[0], { d: this.grouped(node, y, grouped.groups) });
    }
    const y = this.emit(node, { kind: 'softmax', axis: this.netAxis(x, axis), log: node.opType === 'LogSoftmax' }, [x.net]);
    this.set(node.outputs[0], { d: { net: y, layout: x.layout } });
  }

  flatten(node: OnnxNodeInfo): void {
    const x = this.dyn(node, 0);
    const dims = this.dims(x);
    const a = norm(this.attr(node, 'axis', 1), dims.length + 1);
    if (a === 0 || dims.slice(0, a - 1).some((d) => d !== 1))
      this.fail(node, `flattening into the batch axis (axis ${a}) is not supported`);
    this.set(node.outputs[0], { d: this.reshapeTo(node, x, [size(dims.slice(a - 1))]) });
  }

  lrn(node: OnnxNodeInfo): void {
    const x = this.dyn(node, 0);
    const op: NodeOp = {
      kind: 'lrn',
      size: this.attr(node, 'size', 5),
      alpha: this.attr(node, 'alpha', 1e-4),
      beta: this.attr(node, 'beta', 0.75),
      bias: this.attr(node, 'bias', 1),
    };
    this.set(node.outputs[0], { d: { net: this.emit(node, op, [this.as(node, x, 'nhwc')]), layout: 'nhwc' } });
  }

  binary(node: OnnxNodeInfo, kind: 'add' | 'sub' | 'mul' | 'div'): void {
    const raw = node.inputs.map((i) => this.raw(node, i)!);
    const groupedAt = raw.findIndex((v) => 'd' in v && v.d.groups);
    if (groupedAt >= 0 && 't' in raw[1 - groupedAt]) {
      // Attention's scaling, biases and position biases on a value whose batch is moved: the constant's
      // trailing dims must fall on the value's last ONNX axes, each one Net axis without the batch.
      const t = (raw[1 - groupedAt] as { t: Tensor }).t;
      const c = this.canonical(node, (raw[groupedAt] as { d: Dyn }).d);
      const shape = this.shapes.get(c.net)!;
      const first = t.dims.findIndex((d) => d !== 1);
      const trailing = first < 0 ? [] : t.dims.slice(first);
      const r = c.groups.length;
      const fits =
        trailing.length < r &&
        trailing.every((d, k) => {
          const g = c.groups[r - trailing.length + k];
          return g.length === 1 && g[0] === shape.length - trailing.length + k + 1 && (d === 1 || d === shape[g[0] - 1]);
        });
      if (!fits)
        this.fail(node, `a constant [${t.dims}] against a value whose batch is moved (${describeDims(c.groups, shape)}) is not supported`);
      const weights = w(t, trailing);
      const y = this.emit(node, { kind: 'binary', op: kind, act: 'linear', constant: { weights, first: groupedAt === 1 } }, [c.net]);
      return this.set(node.outputs[0], { d: this.grouped(node, y, c.groups) });
    }
    const [a, b] = node.inputs.map((i) => this.val(node, i)!);
    if ('t' in a || 't' in b) {
      const [d, t, first] = 'd' in a ? [a.d, (b as { t: Tensor }).t, false] : [(b as { d: Dyn }).d, a.t, true];
      const y = this.emit(node, { kind: 'binary', op: kind, act: 'linear', constant: { weights: this.operand(node, t, d), first } }, [
        d.net,
      ]);
      this.set(node.outputs[0], { d: { net: y, layout: d.layout } });
      return;
    }
    const [da, db] = [a.d, b.d];
    if (this.dims(da).length !== this.dims(db).length)
      this.fail(node, `operands of different ranks ([N, ${this.dims(da)}] and [N, ${this.dims(db)}]) are not supported`);
    const layout: Layout = da.layout === 'nhwc' || db.layout === 'nhwc' ? 'nhwc' : 'plain';
    const y = this.emit(node, { kind: 'binary', op: kind, act: 'linear' }, [this.as(node, da, layout), this.as(node, db, layout)]);
    this.set(node.outputs[0], { d: { net: y, layout: this.dims(da).length === 3 ? layout : 'plain' } });
  }

  conv(node: OnnxNodeInfo): void {
    const x = this.dyn(node, 0);
    const wt = this.constant(node, 1, 'the filter');
    if (wt.dims.length !== 4) this.fail(node, `only 2-D convolutions are supported (filter [${wt.dims}])`);
    const [, , kh, kw] = wt.dims;
    const s = this.attr(node, 'strides', [1, 1]);
    const dil = this.attr(node, 'dilations', [1, 1]);
    const [, H, W] = this.dims(x);
    const bias = this.optConstant(node, 2);
    const op: NodeOp = {
      kind: 'conv',
      kernel: w(transposeTensor(wt, [2, 3, 1, 0])),
      bias: bias ? w(bias, [bias.data.length]) : undefined,
      strides: [s[0], s[1]],
      dilations: [dil[0], dil[1]],
      padding: this.padding(node, [H, W], [kh, kw], s, dil),
      group: this.attr(node, 'group', 1),
      act: 'linear',
    };
    this.set(node.outputs[0], { d: { net: this.emit(node, op, [this.as(node, x, 'nhwc')]), layout: 'nhwc' } });
  }

  batchNorm(node: OnnxNodeInfo): void {
    const x = this.dyn(node, 0);
    if (this.attr(node, 'training_mode', 0))
      this.fail(node, 'training-mode batch normalization is not supported (export the model in eval mode)');
    const [gamma, beta, mean, variance] = [1, 2, 3, 4].map((i) => this.constant(node, i, ['scale', 'bias', 'mean', 'variance'][i - 1]));
    const eps = this.attr(node, 'epsilon', 1e-5);
    const scale = Float32Array.from(gamma.data, (g, c) => g / Math.sqrt(variance.data[c] + eps));
    const shift = Float32Array.from(beta.data, (b, c) => b - mean.data[c] * scale[c]);
    const op: NodeOp = {
      kind: 'affine',
      scale: { data: scale, shape: [scale.length] },
      shift: { data: shift, shape: [shift.length] },
      axis: this.netAxis(x, 1),
    };
    this.set(node.outputs[0], { d: { net: this.emit(node, op, [x.net]), layout: x.layout } });
  }

  pool(node: OnnxNodeInfo): void {
    const x = this.dyn(node, 0);
    const { k, s, dil } = this.window(node);
    if (dil.some((d) => d !== 1)) this.fail(node, 'dilated pooling is not supported');
    const [, H, W] = this.dims(x);
    let padding = this.padding(node, [H, W], k, s, [1, 1]);
    const avg = node.opType === 'AveragePool';
    if (this.attr(node, 'ceil_mode', 0)) {
      // PyTorch's rule: ceil the output count, but the last window must start inside the input or its left padding.
      const pads = windowGeometry([H, W], k, s, padding).pads;
      const extra = [0, 1].map((a) => {
        const span = [H, W][a] + pads[a][0] + pads[a][1];
        let out = Math.ceil((span - k[a]) / s[a]) + 1;
        if ((out - 1) * s[a] >= [H, W][a] + pads[a][0]) out--;
        return Math.max(0, (out - 1) * s[a] + k[a] - span);
      });
      if (extra.some((e) => e > 0)) {
        if (avg) this.fail(node, 'average pooling with ceil_mode that adds a partial window is not supported');
        padding = [
          [pads[0][0], pads[0][1] + extra[0]],
          [pads[1][0], pads[1][1] + extra[1]],
        ];
      }
    }
    const op: NodeOp = {
      kind: 'pool',
      mode: avg ? 'avg' : 'max',
      size: [k[0], k[1]],
      strides: [s[0], s[1]],
      padding,
      countIncludePad: avg ? this.attr(node, 'count_include_pad', 0) === 1 : undefined,
    };
    this.set(node.outputs[0], { d: { net: this.emit(node, op, [this.as(node, x, 'nhwc')]), layout: 'nhwc' } });
  }

  reduce(node: OnnxNodeInfo): void {
    const x = this.dyn(node, 0);
    const dims = this.dims(x);
    const r = dims.length + 1;
    const given = axesOf(node, [undefined, this.optConstant(node, 1)], 1);
    if ((!given || given.length === 0) && this.attr(node, 'noop_with_empty_axes', 0)) return this.set(node.outputs[0], { d: x });
    const axes = (given?.length ? given : dims.map((_, i) => i + 1)).map((a) => norm(a, r));
    if (axes.includes(0)) this.fail(node, 'reducing over the batch axis is not supported');
    const keep = this.attr(node, 'keepdims', 1) === 1;
    // Without keepdims, the remaining axes must keep their order in the Net value: else reduce the plain value.
    const kept = Array.from({ length: r }, (_, a) => a).filter((a) => !axes.includes(a));
    const ordered = keep || x.layout !== 'nhwc' || r !== 4 || kept.map((a) => NET_AXIS[a]).every((v, i, arr) => i === 0 || v > arr[i - 1]);
    const src: Dyn = ordered ? x : { net: this.as(node, x, 'plain'), layout: 'plain' };
    const mode = node.opType === 'ReduceMean' ? 'mean' : node.opType === 'ReduceMax' ? 'max' : 'sum';
    const y = this.emit(node, { kind: 'reduce', mode, axes: axes.map((a) => this.netAxis(src, a)), keepDims: keep }, [src.net]);
    this.set(node.outputs[0], { d: { net: y, layout: keep ? src.layout : 'plain' } });
  }

  gemm(node: OnnxNodeInfo): void {
    const g = this.groupedInput(node, 0);
    const grouped = g && this.canonical(node, g);
    if (grouped?.groups.length !== undefined && grouped.groups.length !== 2)
      this.fail(node, `Gemm takes [M, K] inputs, got ${describeDims(grouped.groups, this.shapes.get(grouped.net)!)}`);
    // Canonical, K is then the last Net axis: the dense layer's.
    if (grouped) this.single(node, grouped, 1, 'Gemm');
    const a = grouped ? { net: grouped.net, layout: 'plain' as const } : this.dyn(node, 0);
    if (this.attr(node, 'transA', 0)) this.fail(node, 'transA is not supported');
    if (!grouped && this.dims(a).length !== 1) this.fail(node, `Gemm takes [N, K] inputs, got [N, ${this.dims(a)}]`);
    let b = this.constant(node, 1, 'B');
    if (this.attr(node, 'transB', 0)) b = transposeTensor(b, [1, 0]);
    const alpha = this.attr(node, 'alpha', 1);
    const beta = this.attr(node, 'beta', 1);
    const kernel = alpha === 1 ? f32(b) : scaled(b, alpha);
    const c = this.optConstant(node, 2);
    const out = b.dims[1];
    const bias = c && Float32Array.from({ length: out }, (_, j) => beta * c.data[c.data.length === 1 ? 0 : j]);
    const op: NodeOp = {
      kind: 'dense',
      kernel: { data: kernel, shape: b.dims },
      bias: bias && { data: bias, shape: [out] },
      act: 'linear',
    };
    const y = this.emit(node, op, [a.net]);
    this.set(node.outputs[0], { d: grouped ? this.grouped(node, y, grouped.groups) : { net: y, layout: 'plain' } });
  }

  matmul(node: OnnxNodeInfo): void {
    const raw = node.inputs.map((i) => this.raw(node, i)!);
    if (raw.some((v) => 'd' in v && v.d.groups)) return this.groupedMatmul(node, raw[0], raw[1]);
    const [a, b] = node.inputs.map((i) => this.val(node, i)!);
    if ('t' in a) this.fail(node, 'a constant first operand is not supported');
    const x = this.as(node, a.d, 'plain');
    if ('t' in b) {
      if (b.t.dims.length !== 2) this.fail(node, `only a 2-D constant second operand is supported (got [${b.t.dims}])`);
      this.set(node.outputs[0], { d: { net: this.emit(node, { kind: 'dense', kernel: w(b.t), act: 'linear' }, [x]), layout: 'plain' } });
      return;
    }
    this.set(node.outputs[0], { d: { net: this.emit(node, { kind: 'matmul' }, [x, this.as(node, b.d, 'plain')]), layout: 'plain' } });
  }

  /**
   * A matrix product where the batch is moved or folded (nn.MultiheadAttention's [tokens, batch * heads,
   * d] values): on the canonical Net values, the matrix axes are their last two axes and the leading
   * axes line up, one image per row.
   */
  private groupedMatmul(node: OnnxNodeInfo, a: Val, b: Val): void {
    if ('t' in a) this.fail(node, 'a constant first operand is not supported');
    const ca = this.canonical(node, a.d);
    const r = ca.groups.length;
    this.single(node, ca, r - 1, 'a matrix product');
    if ('t' in b) {
      if (b.t.dims.length !== 2) this.fail(node, `only a 2-D constant second operand is supported (got [${b.t.dims}])`);
      const y = this.emit(node, { kind: 'dense', kernel: w(b.t), act: 'linear' }, [ca.net]);
      return this.set(node.outputs[0], { d: this.grouped(node, y, ca.groups) });
    }
    const cb = this.canonical(node, b.d);
    if (cb.groups.length !== r || r < 3)
      this.fail(node, 'a product whose matrices hold the batch (no leading axes to carry it) is not supported');
    this.single(node, ca, r - 2, 'a matrix product');
    this.single(node, cb, r - 2, 'a matrix product');
    this.single(node, cb, r - 1, 'a matrix product');
    if (JSON.stringify(ca.groups.slice(0, -2)) !== JSON.stringify(cb.groups.slice(0, -2)))
      this.fail(
        node,
        `the operands hold the batch in different axes (${this.describe({ ...ca, layout: 'plain' })} and ${this.describe({ ...cb, layout: 'plain' })})`,
      );
    const y = this.emit(node, { kind: 'matmul' }, [ca.net, cb.net]);
    const rank = this.shapes.get(y)!.length + 1;
    this.set(node.outputs[0], { d: this.grouped(node, y, [...ca.groups.slice(0, -2), [rank - 2], [rank - 1]]) });
  }

  /**
   * Einsum as a batched matrix product (MaxViT's attention: 'bghid,bghjd->bghij' and
   * 'bghij,bghjd->bghid'): two image values sharing their leading labels (the batch first), one label
   * kept from each, one summed over. Each operand is transposed to [shared..., kept, summed] /
   * [shared..., summed, kept], multiplied, and the product transposed to the output's order.
   */
  einsum(node: OnnxNodeInfo): void {
    const eq = String(this.attr(node, 'equation', '')).replace(/\s/g, '');
    const m = /^([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)$/.exec(eq);
    const refuse = (why: string): never =>
      this.fail(node, `equation ${eq}: ${why} (supported: a batched matrix product of two image values, like bhid,bhjd->bhij)`);
    if (!m || node.inputs.length !== 2) return refuse('not two operands with explicit labels');
    const [, la, lb, lo] = m;
    const [a, b] = [0, 1].map((i) => this.dyn(node, i));
    const [ra, rb] = [a, b].map((d) => this.dims(d).length + 1);
    if (la.length !== ra || lb.length !== rb) refuse("the labels do not match the operands' ranks");
    if (new Set(la).size !== la.length || new Set(lb).size !== lb.length || new Set(lo).size !== lo.length)
      refuse('a label repeats within an operand (diagonals are not supported)');
    const shared = [...lo].filter((c) => la.includes(c) && lb.includes(c));
    const keptA = [...la].filter((c) => lo.includes(c) && !lb.includes(c));
    const keptB = [...lb].filter((c) => lo.includes(c) && !la.includes(c));
    const summed = [...la].filter((c) => lb.includes(c) && !lo.includes(c));
    if (keptA.length !== 1 || keptB.length !== 1 || summed.length !== 1 || shared.length + 2 !== lo.length)
      refuse('not one kept label per operand and one summed label');
    if (la[0] !== lb[0] || la[0] !== lo[0] || shared[0] !== lo[0])
      refuse('the first label (the batch) is not the first of each operand and of the output');
    const order = (labels: string, want: string[]) => want.map((c) => labels.indexOf(c));
    const moved = (d: Dyn, perm: number[]) => {
      const net = this.as(node, d, 'plain');
      return isIdentity(perm) ? net : this.emit(node, { kind: 'transpose', perm }, [net]);
    };
    const x = moved(a, order(la, [...shared, keptA[0], summed[0]]));
    const y = moved(b, order(lb, [...shared, summed[0], keptB[0]]));
    const product = this.emit(node, { kind: 'matmul' }, [x, y]);
    const out = order([...shared, keptA[0], keptB[0]].join(''), [...lo]);
    this.set(node.outputs[0], {
      d: { net: isIdentity(out) ? product : this.emit(node, { kind: 'transpose', perm: out }, [product]), layout: 'plain' },
    });
  }

  /** A reshape target (with the batch first) as dims without the batch. */
  private targetDims(node: OnnxNodeInfo, x: Dyn, target: number[]): number[] {
    const dims = [BATCH, ...this.dims(x)];
    const t = target.map((d, i) => (d === 0 && !this.attr(node, 'allowzero', 0) ? dims[i] : d));
    if (t.slice(1).some((d) => d === BATCH || (d !== 0 && d % BATCH === 0)))
      this.fail(node, `the target shape mixes the batch axis into others ([${target}])`);
    const batchFirst = t[0] === BATCH || (t[0] === 1 && this.fixedBatch1) || t[0] === -1;
    if (!batchFirst) this.fail(node, `the target shape [${target}] does not keep the batch axis first (export with a dynamic batch axis)`);
    const rest = t.slice(1);
    const known = rest.filter((d) => d !== -1).reduce((p, q) => p * q, 1);
    return rest.map((d) => (d === -1 ? size(dims.slice(1)) / known : d));
  }

  reshape(node: OnnxNodeInfo): void {
    const target = Array.from(this.constant(node, 1, 'the target shape').data);
    const folds = (d: number, i: number) => d >= BATCH && d % BATCH === 0 && (i > 0 || d !== BATCH);
    const g = this.groupedInput(node, 0);
    if (g) return this.set(node.outputs[0], { d: this.regroup(node, g, target) });
    const x = this.dyn(node, 0);
    if (target.some(folds)) return this.set(node.outputs[0], { d: this.regroup(node, x, target) });
    // view(-1, heads, T, T) of [B, windows, heads, T, T]: the -1 is the batch times what is left (Swin).
    const rest = target.slice(1);
    if (target[0] === -1 && !rest.includes(-1) && !rest.includes(0) && size(rest) !== size(this.dims(x)) && !this.fixedBatch1)
      return this.set(node.outputs[0], { d: this.regroup(node, x, target) });
    this.set(node.outputs[0], { d: this.reshapeTo(node, x, this.targetDims(node, x, target)) });
  }

  squeeze(node: OnnxNodeInfo): void {
    const d = node.opType === 'Squeeze' ? this.groupedInput(node, 0) : undefined;
    if (d) {
      const given = axesOf(node, [undefined, this.optConstant(node, 1)], 1);
      if (!given || given.length !== 1) this.fail(node, 'squeezing a value with a moved batch axis needs exactly one axis');
      const a = norm(given[0], d.groups.length);
      return this.set(node.outputs[0], { d: this.lazyTake(node, d, a, 0, 1, true) });
    }
    const x = this.dyn(node, 0);
    const dims = this.dims(x);
    const axes = axesOf(node, [undefined, this.optConstant(node, 1)], 1);
    if (node.opType === 'Squeeze') {
      const r = dims.length + 1;
      const drop = (axes ?? dims.flatMap((d, i) => (d === 1 ? [i + 1] : []))).map((a) => norm(a, r));
      if (drop.includes(0)) this.fail(node, 'squeezing the batch axis is not supported');
      this.set(node.outputs[0], {
        d: this.reshapeTo(
          node,
          x,
          dims.filter((_, i) => !drop.includes(i + 1)),
        ),
      });
      return;
    }
    const r = dims.length + 1 + (axes?.length ?? 0);
    const add = (axes ?? []).map((a) => norm(a, r));
    if (add.includes(0)) this.fail(node, 'adding an axis before the batch is not supported');
    const out: number[] = [];
    let k = 0;
    for (let i = 1; i < r; i++) out.push(add.includes(i) ? 1 : dims[k++]);
    this.set(node.outputs[0], { d: this.reshapeTo(node, x, out) });
  }

  transpose(node: OnnxNodeInfo): void {
    const g = this.groupedInput(node, 0);
    if (g) {
      const groups = g.groups;
      const perm = this.attr(
        node,
        'perm',
        groups.map((_, i) => groups.length - 1 - i),
      );
      return this.set(node.outputs[0], {
        d: this.grouped(
          node,
          g.net,
          perm.map((p) => groups[p]),
        ),
      });
    }
    const x = this.dyn(node, 0);
    const r = this.dims(x).length + 1;
    const perm = this.attr(
      node,
      'perm',
      Array.from({ length: r }, (_, i) => r - 1 - i),
    );
    if (perm[0] !== 0)
      return this.set(node.outputs[0], {
        d: this.grouped(
          node,
          this.as(node, x, 'plain'),
          (x.layout === 'nhwc' && r === 4 ? perm.map((p) => NET_AXIS[p]) : perm).map((p) => [p]),
        ),
      });
    // The permutation of the Net value that gives the ONNX result as it is ("plain").
    const q = x.layout === 'nhwc' && r === 4 ? perm.map((p) => NET_AXIS[p]) : perm;
    // The result held NHWC would be the Net value itself when q undoes the layout (ConvNeXt's permutes).
    if (r === 4 && isIdentity(ONNX_AXIS.map((p) => q[p]))) return this.set(node.outputs[0], { d: { net: x.net, layout: 'nhwc' } });
    if (isIdentity(q)) return this.set(node.outputs[0], { d: { net: x.net, layout: 'plain' } });
    this.set(node.outputs[0], { d: { net: this.emit(node, { kind: 'transpose', perm: q }, [x.net]), layout: 'plain' } });
  }

  /** A constant with a leading 1 in an image value's place: repeated for every image. */
  private perImageConstant(node: OnnxNodeInfo, t: Tensor, layout: Layout): Dyn {
    if (t.dims[0] !== 1) this.fail(node, `a constant [${t.dims}] cannot stand for a batch of images (leading 1 expected)`);
    const nhwc = layout === 'nhwc' && t.dims.length === 4;
    const v = nhwc ? transposeTensor(t, ONNX_AXIS) : t;
    return { net: this.emit(node, { kind: 'const', value: w(v, v.dims.slice(1)) }, [this.anchor]), layout: nhwc ? 'nhwc' : 'plain' };
  }

  concat(node: OnnxNodeInfo): void {
    const vals = node.inputs.map((i) => this.val(node, i)!);
    const layout: Layout = vals.some((v) => 'd' in v && v.d.layout === 'nhwc' && this.dims(v.d).length === 3) ? 'nhwc' : 'plain';

    const xs = vals.map((v) => ('d' in v ? v.d : this.perImageConstant(node, v.t, layout)));
    const r = this.dims(xs[0]).length + 1;
    const axis = norm(this.attr(node, 'axis', 1), r);
    if (axis === 0) this.fail(node, 'concatenating along the batch axis is not supported');
    const target: Dyn = { net: '', layout: r === 4 ? layout : 'plain' };
    const inputs = xs.map((x) => this.as(node, x, target.layout));
    const netAxis = target.layout === 'nhwc' ? NET_AXIS[axis] : axis;
    this.set(node.outputs[0], {
      d: { net: this.emit(node, { kind: 'concat', axis: netAxis, act: 'linear' }, inputs), layout: target.layout },
    });
  }

  /** x[..., start:end:step, ...] on ONNX axis `axis` (step 1 or -1); returns x when it takes everything. */
  private sliceAxis(node: OnnxNodeInfo, x: Dyn, axis: number, start: number, end: number, step: number): Dyn {
    const dims = this.dims(x);
    const a = norm(axis, dims.length + 1);
    const idx = sliceIndices(a === 0 ? 1 : dims[a - 1], start, end, step);
    if (a === 0) {
      if (start !== 0 || step !== 1 || (end !== -1 && end < BATCH && end < 2 ** 31 - 1))
        this.fail(node, 'slicing the batch axis is not supported');
      return x;
    }
    if (step === 1 && idx.length === dims[a - 1]) return x;
    if (step > 1) return this.strided(node, x, a, idx, step);
    if (step !== 1 && step !== -1) this.fail(node, `slices with step ${step} are not supported`);
    if (idx.length === 0) this.fail(node, 'the slice is empty');
    const op: NodeOp =
      step === 1
        ? { kind: 'slice', axis: this.netAxis(x, a), begin: idx[0], end: idx[idx.length - 1] + 1, step: 1 }
        : {
            kind: 'slice',
            axis: this.netAxis(x, a),
            begin: idx[0],
            end: idx[idx.length - 1] - 1 < 0 ? -SLICE_END : idx[idx.length - 1] - 1,
            step: -1,
          };
    return { net: this.emit(node, op, [x.net]), layout: x.layout };
  }

  /**
   * x[start::step] on ONNX axis a (Swin's patch merging, x[:, 0::2, 1::2]): the axis split into
   * (dim / step, step), index `start` of the inner one taken, the split undone. Every step-th entry
   * to the end of an axis the step divides; other strided slices are refused.
   */
  private strided(node: OnnxNodeInfo, x: Dyn, a: number, idx: number[], step: number): Dyn {
    const p = this.netAxis(x, a);
    const shape = this.shapes.get(x.net)!;
    const dim = shape[p - 1];
    const start = idx[0];
    if (dim % step !== 0 || start >= step || idx.length !== dim / step)
      this.fail(node, `slices with step ${step} are supported from an index below the step to the end of an axis it divides`);
    const split = [...shape.slice(0, p - 1), dim / step, step, ...shape.slice(p)];
    let v = this.emit(node, { kind: 'reshape', shape: split }, [x.net]);
    v = this.emit(node, { kind: 'slice', axis: p + 1, begin: start, end: start + 1, step: 1 }, [v]);
    v = this.emit(node, { kind: 'reshape', shape: shape.map((d, i) => (i === p - 1 ? dim / step : d)) }, [v]);
    return { net: v, layout: x.layout };
  }

  slice(node: OnnxNodeInfo): void {
    const get = (name: string, i: number) =>
      node.attrs.has(name)
        ? (node.attrs.get(name) as number[])
        : this.optConstant(node, i)
          ? Array.from(this.optConstant(node, i)!.data)
          : undefined;
    const starts = get('starts', 1)!;
    const ends = get('ends', 2)!;
    const axes = get('axes', 3) ?? starts.map((_, i) => i);
    const steps = get('steps', 4) ?? starts.map(() => 1);
    const grouped = this.groupedInput(node, 0);
    if (grouped) {
      let d: Dyn = grouped;
      axes.forEach((ax, k) => {
        if (steps[k] !== 1 || !d.groups) this.fail(node, 'only step-1 slices of a value with a moved batch axis are supported');
        const g = d as Dyn & { groups: Groups };
        const a = norm(ax, g.groups.length);
        const whole = this.groupedDim(g, a);
        // Taking all of the batch's axis (start 0, end to the end) leaves the value as it is.
        if (Number.isNaN(whole) && starts[k] === 0 && ends[k] >= BATCH) return;
        const idx = sliceIndices(whole, starts[k], ends[k], 1);
        d = this.lazyTake(node, g, a, idx[0], idx[idx.length - 1] + 1, false);
      });
      return this.set(node.outputs[0], { d });
    }
    let x = this.dyn(node, 0);
    axes.forEach((a, k) => (x = this.sliceAxis(node, x, a, starts[k], ends[k], steps[k])));
    this.set(node.outputs[0], { d: x });
  }

  split(node: OnnxNodeInfo): void {
    const d = this.groupedInput(node, 0);
    if (d) {
      // timm's q, k, v = qkv.unbind(0) on the (3, batch, heads, tokens, d) permute.
      const a = norm(this.attr(node, 'axis', 0), d.groups.length);
      const whole = this.groupedDim(d, a);
      const n = node.outputs.length;
      const given = node.attrs.has('split')
        ? (node.attrs.get('split') as number[])
        : this.optConstant(node, 1)
          ? Array.from(this.optConstant(node, 1)!.data)
          : Array.from({ length: n }, () => whole / n);
      let at = 0;
      node.outputs.forEach((out, i) => {
        this.set(out, { d: this.lazyTake(node, d, a, at, at + given[i], false) });
        at += given[i];
      });
      return;
    }
    const x = this.dyn(node, 0);
    const dims = this.dims(x);
    const a = norm(this.attr(node, 'axis', 0), dims.length + 1);
    if (a === 0) this.fail(node, 'splitting the batch axis is not supported');
    const n = node.outputs.length;
    const given = node.attrs.has('split')
      ? (node.attrs.get('split') as number[])
      : this.optConstant(node, 1)
        ? Array.from(this.optConstant(node, 1)!.data)
        : undefined;
    const whole = dims[a - 1];
    const sizes = given ?? Array.from({ length: n }, (_, i) => Math.min(Math.ceil(whole / n), whole - i * Math.ceil(whole / n)));
    let at = 0;
    node.outputs.forEach((out, i) => {
      this.set(out, { d: this.sliceAxis(node, x, a, at, at + sizes[i], 1) });
      at += sizes[i];
    });
  }

  gather(node: OnnxNodeInfo): void {
    const idx = this.constant(node, 1, 'the indices');
    const d = this.groupedInput(node, 0);
    if (d) {
      const a = norm(this.attr(node, 'axis', 0), d.groups.length);
      if (idx.dims.length !== 0) this.fail(node, 'only a single constant index is supported');
      const i = idx.data[0] < 0 ? idx.data[0] + this.groupedDim(d, a) : idx.data[0];
      return this.set(node.outputs[0], { d: this.lazyTake(node, d, a, i, i + 1, true) });
    }
    const x = this.dyn(node, 0);
    const dims = this.dims(x);
    const a = norm(this.attr(node, 'axis', 0), dims.length + 1);
    if (idx.dims.length !== 0 || a === 0) this.fail(node, 'only a single constant index on an axis other than the batch is supported');
    const i = idx.data[0] < 0 ? idx.data[0] + dims[a - 1] : idx.data[0];
    const one = this.sliceAxis(node, x, a, i, i + 1, 1);
    this.set(node.outputs[0], {
      d: this.reshapeTo(
        node,
        one,
        dims.filter((_, k) => k !== a - 1),
      ),
    });
  }

  pad(node: OnnxNodeInfo): void {
    const x = this.dyn(node, 0);
    const r = this.dims(x).length + 1;
    if (this.attr(node, 'mode', 'constant') !== 'constant')
      this.fail(node, `padding mode ${this.attr(node, 'mode', '')} is not supported (only constant)`);
    const p = node.attrs.has('pads') ? (node.attrs.get('pads') as number[]) : Array.from(this.constant(node, 1, 'the pads').data);
    const axes = this.optConstant(node, 3)
      ? Array.from(this.optConstant(node, 3)!.data).map((a) => norm(a, r))
      : Array.from({ length: r }, (_, i) => i);
    const value = node.attrs.has('value') ? this.attr(node, 'value', 0) : (this.optConstant(node, 2)?.data[0] ?? 0);
    const pads: [number, number][] = Array.from({ length: r }, () => [0, 0]);
    axes.forEach((a, k) => (pads[this.netAxis(x, a)] = [p[k], p[k + axes.length]]));
    if (pads[0][0] || pads[0][1]) this.fail(node, 'padding the batch axis is not supported');
    this.set(node.outputs[0], { d: { net: this.emit(node, { kind: 'pad', pads, value }, [x.net]), layout: x.layout } });
  }

  expand(node: OnnxNodeInfo): void {
    const v = this.val(node, node.inputs[0])!;
    const shape = Array.from(this.constant(node, 1, 'the shape').data);
    if ('t' in v) {
      // A constant expanded to the batch (ViT's class token): repeated per image.
      if (shape[0] !== BATCH) this.fail(node, 'expanding a constant other than to the batch size is not supported');
      const dims = broadcastDims(v.t.dims, [1, ...shape.slice(1)]);
      const full = fold({ ...node, opType: 'Expand' }, [v.t, tensor('int', [dims.length], dims)])![0];
      this.set(node.outputs[0], { d: this.perImageConstant(node, full, 'plain') });
      return;
    }
    const dims = [1, ...this.dims(v.d)];
    if (
      broadcastDims(
        dims,
        shape.map((d) => (d === BATCH ? 1 : d)),
      ).join() !== dims.join()
    )
      this.fail(node, 'expanding an image value is not supported');
    this.set(node.outputs[0], { d: v.d });
  }

  layerNorm(node: OnnxNodeInfo): void {
    const x = this.dyn(node, 0);
    const src: Dyn = { net: this.as(node, x, 'plain'), layout: 'plain' };
    const r = this.dims(src).length + 1;
    const axis = norm(this.attr(node, 'axis', -1), r);
    if (axis === 0) this.fail(node, 'normalizing over the batch axis is not supported');
    const scale = this.constant(node, 1, 'the scale');
    const bias = this.optConstant(node, 2);
    const op: NodeOp = {
      kind: 'layerNorm',
      axis,
      epsilon: this.attr(node, 'epsilon', 1e-5),
      scale: w(scale, [scale.data.length]),
      bias: bias && w(bias, [bias.data.length]),
    };
    this.set(node.outputs[0], { d: { net: this.emit(node, op, [src.net]), layout: 'plain' } });
  }

  /** The Net value of an ONNX value in ONNX's own element order (what the logits are read as). */
  output(name: string): string {
    const v = this.vals.get(name);
    if (!v) throw new UsageError(`${this.file}: output ${name} is not computed by the graph`);
    if (!('d' in v)) throw new UsageError(`${this.file}: output ${name} does not depend on the input image`);
    const dims = this.dims(v.d);
    const pseudo: OnnxNodeInfo = { name: 'output', opType: 'Identity', domain: '', inputs: [], outputs: [], attrs: new Map() };
    return dims.length === 3 && !(dims[1] === 1 && dims[2] === 1) ? this.as(pseudo, v.d, 'plain') : v.d.net;
  }
}

type Handler = (c: Converter, node: OnnxNodeInfo) => void;

/** Each ONNX operator the importer translates, and how: the one list of what is supported. */
const HANDLERS: Record<string, Handler> = {
  ...Object.fromEntries(Object.entries(ACTIVATIONS).map(([op, a]): [string, Handler] => [op, (c, n) => c.act(n, a)])),
  ...Object.fromEntries(Object.entries(BINARY).map(([op, b]): [string, Handler] => [op, (c, n) => c.binary(n, b)])),
  Identity: (c, n) => c.same(n),
  Dropout: (c, n) => c.same(n),
  Cast: (c, n) => c.same(n),
  LeakyRelu: (c, n) => c.act(n, { leaky: c.attr(n, 'alpha', 0.01) }),
  Elu: (c, n) => (c.attr(n, 'alpha', 1) !== 1 ? c.fail(n, 'only alpha 1 is supported') : c.act(n, 'elu')),
  HardSigmoid: (c, n) => c.act(n, { hardSigmoid: [c.attr(n, 'alpha', 0.2), c.attr(n, 'beta', 0.5)] }),
  Gelu: (c, n) => (c.attr(n, 'approximate', 'none') !== 'none' ? c.fail(n, 'only the exact (erf) GELU is supported') : c.act(n, 'gelu')),
  Clip: (c, n) => c.clip(n),
  Pow: (c, n) => c.pow(n),
  PRelu: (c, n) => c.prelu(n),
  Sum: (c, n) => c.sum(n),
  Mean: (c, n) => c.sum(n),
  Conv: (c, n) => c.conv(n),
  BatchNormalization: (c, n) => c.batchNorm(n),
  MaxPool: (c, n) => c.pool(n),
  AveragePool: (c, n) => c.pool(n),
  GlobalAveragePool: (c, n) => c.globalPool(n),
  GlobalMaxPool: (c, n) => c.globalPool(n),
  ReduceMean: (c, n) => c.reduce(n),
  ReduceMax: (c, n) => c.reduce(n),
  ReduceSum: (c, n) => c.reduce(n),
  Softmax: (c, n) => c.softmax(n),
  LogSoftmax: (c, n) => c.softmax(n),
  Gemm: (c, n) => c.gemm(n),
  MatMul: (c, n) => c.matmul(n),
  Flatten: (c, n) => c.flatten(n),
  Reshape: (c, n) => c.reshape(n),
  Squeeze: (c, n) => c.squeeze(n),
  Unsqueeze: (c, n) => c.squeeze(n),
  Transpose: (c, n) => c.transpose(n),
  Concat: (c, n) => c.concat(n),
  Slice: (c, n) => c.slice(n),
  Split: (c, n) => c.split(n),
  Gather: (c, n) => c.gather(n),
  Pad: (c, n) => c.pad(n),
  Expand: (c, n) => c.expand(n),
  LRN: (c, n) => c.lrn(n),
  LayerNormalization: (c, n) => c.layerNorm(n),
  Einsum: (c, n) => c.einsum(n),
};

/** What the importer takes: translated operators, and those it evaluates when their inputs are constants. */
export const SUPPORTED_OPS = [...Object.keys(HANDLERS), ...FOLDED.filter((op) => !HANDLERS[op])].sort();

/**
 * The logits value: `name` when given, else the graph's output, with a final Softmax / LogSoftmax
 * (through Identity) left out.
 */
export function logitsValue(m: OnnxModel, file: string, name?: string): string {
  return logitsRoute(m, file, name).value;
}

/**
 * logitsValue, and the nodes it left out between that value and the graph's first output (output
 * first; none where `name` is given or the output is the logits).
 */
export function logitsRoute(m: OnnxModel, file: string, name?: string): { value: string; skipped: OnnxNodeInfo[] } {
  const produced = new Map<string, OnnxNodeInfo>();
  for (const n of m.nodes) for (const o of n.outputs) produced.set(o, n);
  if (name !== undefined) {
    if (!produced.has(name))
      throw new UsageError(
        `${file}: logits value "${name}" is not computed by any node (outputs: ${m.outputs.map((o) => o.name).join(', ')})`,
      );
    return { value: name, skipped: [] };
  }
  let v = m.outputs[0]?.name;
  if (!v) throw new UsageError(`${file}: the graph has no output`);
  const skipped: OnnxNodeInfo[] = [];
  for (let p = produced.get(v); p && ['Softmax', 'LogSoftmax', 'Identity'].includes(p.opType); p = produced.get(v)) {
    skipped.push(p);
    v = p.inputs[0];
  }
  return { value: v, skipped };
}

/** Nodes the logits depend on, in graph order (branches that do not lead there are never converted). */
function needed(m: OnnxModel, logits: string): OnnxNodeInfo[] {
  const produced = new Map<string, OnnxNodeInfo>();
  for (const n of m.nodes) for (const o of n.outputs) produced.set(o, n);
  const keep = new Set<OnnxNodeInfo>();
  const stack = [logits];
  while (stack.length) {
    const p = produced.get(stack.pop()!);
    if (!p || keep.has(p)) continue;
    keep.add(p);
    stack.push(...p.inputs.filter(Boolean));
  }
  return m.nodes.filter((n) => keep.has(n));
}

export interface OnnxInput {
  name: string;
  /** [H, W, C] */
  shape: ImageShape;
  /** Whether the graph takes NCHW (true for PyTorch exports) or NHWC images. */
  channelsFirst: boolean;
  /** The graph fixes the batch at 1. */
  batch1: boolean;
}

/** The image input: its name, size and layout (from the graph, completed by `inputShape` where dynamic). */
export function imageInput(m: OnnxModel, file: string, inputShape?: ImageShape): OnnxInput {
  if (m.inputs.length !== 1)
    throw new UsageError(
      `${file}: the graph has ${m.inputs.length} inputs (${m.inputs.map((i) => i.name).join(', ')}); only single-input image models are supported`,
    );
  const { name, dims } = m.inputs[0];
  if (dims.length !== 4)
    throw new UsageError(`${file}: input ${name} has ${dims.length} dimensions; expected [N, C, H, W] (or [N, H, W, C])`);
  const first = channelsFirst(dims);
  const [c, h, wd] = first ? [dims[1], dims[2], dims[3]] : [dims[3], dims[1], dims[2]];
  const num = (d: number | string, i: number) => (typeof d === 'number' ? d : inputShape?.[i]);
  const shape = [num(h, 0), num(wd, 1), num(c, 2)];
  if (shape.some((d) => d === undefined))
    throw new UsageError(
      `${file}: input ${name} has dynamic size [${dims.join(', ')}]; give the image size with {inputShape} HxWxC (or "inputShape" in the card)`,
    );
  if (inputShape && inputShape.some((d, i) => typeof [h, wd, c][i] === 'number' && [h, wd, c][i] !== d))
    throw new UsageError(`${file}: input ${name} takes [${dims.join(', ')}] images, but the card / flags say ${inputShape.join('x')}`);
  return { name, shape: shape as ImageShape, channelsFirst: first, batch1: dims[0] === 1 };
}

/** Whether an image input of these dims is NCHW (else NHWC): 1 or 3 channels second, or not last. */
export function channelsFirst(dims: readonly (number | string)[]): boolean {
  const isChannels = (d: number | string) => d === 1 || d === 3;
  return isChannels(dims[1]) || !isChannels(dims[3]);
}

/** The Net of an ONNX model from its image input up to its logits (the input is NHWC pixels after the card's preprocessing). */
export function onnxToNet(m: OnnxModel, file: string, input: OnnxInput, logitsName?: string): Net {
  const logits = logitsValue(m, file, logitsName);
  const [h, wd, c] = input.shape;
  const cv = new Converter(
    m,
    file,
    { onnx: input.name, net: 'input', shape: [h, wd, c], layout: input.channelsFirst ? 'nhwc' : 'plain' },
    input.batch1,
  );
  for (const n of needed(m, logits)) cv.convert(n);
  return { input: 'input', nodes: cv.nodes, output: cv.output(logits) };
}

/** The engine network of an ONNX model for the card's input size, up to its logits, simplified. */
export function onnxNet(m: OnnxModel, file: string, card: { inputShape?: ImageShape; logitsLayer?: string }): Net {
  return optimizeNet(onnxToNet(m, file, imageInput(m, file, card.inputShape), card.logitsLayer));
}
