import type { AttrValue, OnnxNodeInfo, Tensor } from './parse.js';
import { transposeArray } from '../../engine/net.js';

/**
 * Constant folding: nodes whose inputs are all known at import time (initializers, Constant nodes,
 * the shape of a value) are evaluated here, so that shape arithmetic (Shape -> Gather -> Unsqueeze ->
 * Concat -> Reshape, as exporters write flatten and channel shuffle) never reaches the Net.
 *
 * The batch size is unknown at import time: Shape() writes BATCH in its place. It passes through
 * gathers, concatenations and casts unchanged, so a Reshape target that starts with BATCH keeps the
 * batch; arithmetic that mixes it with other dimensions produces a number no real shape has, which the
 * Reshape conversion refuses.
 */
export const BATCH = 1_000_003;

export const tensor = (dtype: Tensor['dtype'], dims: number[], data: ArrayLike<number>): Tensor => ({
  dtype,
  dims,
  data: Float64Array.from(data),
});
export const size = (dims: number[]) => dims.reduce((a, b) => a * b, 1);
const strides = (dims: number[]) => dims.map((_, i) => size(dims.slice(i + 1)));

/** Numpy broadcasting of two shapes. */
export function broadcastDims(a: number[], b: number[]): number[] {
  const r = Math.max(a.length, b.length);
  const pa = [...new Array(r - a.length).fill(1), ...a];
  const pb = [...new Array(r - b.length).fill(1), ...b];
  return pa.map((d, i) => {
    if (d !== pb[i] && d !== 1 && pb[i] !== 1) throw new Error(`shapes [${a}] and [${b}] do not broadcast`);
    return Math.max(d, pb[i]);
  });
}

/** Element of `t` at the broadcast position `idx` of a result of `dims`. */
function at(t: Tensor, dims: number[], idx: number[]): number {
  const off = dims.length - t.dims.length;
  const st = strides(t.dims);
  let k = 0;
  for (let i = 0; i < t.dims.length; i++) k += (t.dims[i] === 1 ? 0 : idx[i + off]) * st[i];
  return t.data[k];
}

function elementwise(ts: Tensor[], f: (...v: number[]) => number, dtype = ts[0].dtype): Tensor {
  const dims = ts.map((t) => t.dims).reduce(broadcastDims);
  const out = new Float64Array(size(dims));
  const idx = new Array<number>(dims.length).fill(0);
  for (let o = 0; o < out.length; o++) {
    out[o] = f(...ts.map((t) => at(t, dims, idx)));
    for (let a = dims.length - 1; a >= 0 && ++idx[a] === dims[a]; a--) idx[a] = 0;
  }
  return { dtype, dims, data: out };
}

export function transposeTensor(t: Tensor, perm: number[]): Tensor {
  const { data, shape } = transposeArray(t.data, t.dims, perm);
  return { dtype: t.dtype, dims: shape, data };
}

const ints = (t: Tensor | undefined): number[] => (t ? Array.from(t.data) : []);
const norm = (a: number, r: number) => (a < 0 ? a + r : a);

/** ONNX Slice semantics on one axis: the indices it takes. */
export function sliceIndices(dim: number, start: number, end: number, step: number): number[] {
  const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
  let s = start < 0 ? start + dim : start;
  let e = end < 0 ? end + dim : end;
  if (step > 0) {
    s = clamp(s, 0, dim);
    e = clamp(e, 0, dim);
  } else {
    s = clamp(s, -1, dim - 1);
    e = clamp(e, -1, dim - 1);
  }
  const out: number[] = [];
  for (let i = s; step > 0 ? i < e : i > e; i += step) out.push(i);
  return out;
}

/** Takes, along each axis, the given indices (a gather on every axis at once). */
function pick(t: Tensor, keep: number[][]): Tensor {
  const dims = keep.map((k) => k.length);
  const st = strides(t.dims);
  const out = new Float64Array(size(dims));
  const idx = new Array<number>(dims.length).fill(0);
  for (let o = 0; o < out.length; o++) {
    let k = 0;
    for (let a = 0; a < dims.length; a++) k += keep[a][idx[a]] * st[a];
    out[o] = t.data[k];
    for (let a = dims.length - 1; a >= 0 && ++idx[a] === dims[a]; a--) idx[a] = 0;
  }
  return { dtype: t.dtype, dims, data: out };
}

const all = (d: number) => Array.from({ length: d }, (_, i) => i);

/** Axes of Squeeze / Unsqueeze / Reduce*: an attribute before opset 13 (18 for reductions), an input after. */
export function axesOf(node: OnnxNodeInfo, inputs: (Tensor | undefined)[], inputIndex: number): number[] | undefined {
  const attr = node.attrs.get('axes');
  if (Array.isArray(attr)) return attr as number[];
  const t = inputs[inputIndex];
  return t ? ints(t) : undefined;
}

function attr(node: OnnxNodeInfo, name: string, fallback: number): number;
function attr(node: OnnxNodeInfo, name: string, fallback: number[]): number[];
function attr(node: OnnxNodeInfo, name: string, fallback: AttrValue): AttrValue {
  return node.attrs.get(name) ?? fallback;
}

const ELEMENTWISE: Record<string, (...v: number[]) => number> = {
  Add: (a, b) => a + b,
  Sub: (a, b) => a - b,
  Mul: (a, b) => a * b,
  Pow: (a, b) => a ** b,
  Max: Math.max,
  Min: Math.min,
  Sqrt: Math.sqrt,
  Neg: (a) => -a,
  Abs: Math.abs,
  Floor: Math.floor,
  Ceil: Math.ceil,
  Reciprocal: (a) => 1 / a,
  Exp: Math.exp,
  Relu: (a) => Math.max(a, 0),
  Sigmoid: (a) => 1 / (1 + Math.exp(-a)),
  Tanh: Math.tanh,
  Erf: erf,
};

/** Abramowitz-Stegun 7.1.26 would do for shapes, but folded weights deserve float precision: a series / continued fraction. */
function erf(x: number): number {
  const t = Math.abs(x);
  if (t > 6) return Math.sign(x);
  // Maclaurin series converges fast for |x| < 3; beyond, 1 - erfc by a continued fraction.
  if (t < 3) {
    let sum = t;
    let term = t;
    for (let n = 1; n < 80; n++) {
      term *= (-t * t) / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * ((2 / Math.sqrt(Math.PI)) * sum);
  }
  let f = 0;
  for (let n = 60; n >= 1; n--) f = n / 2 / (t + f);
  return Math.sign(x) * (1 - Math.exp(-t * t) / Math.sqrt(Math.PI) / (t + f));
}

/** The ops fold() evaluates besides the element-wise ones (shape arithmetic and constants): one entry each. */
const FOLDERS: Record<string, (node: OnnxNodeInfo, inputs: (Tensor | undefined)[], x: Tensor | undefined) => Tensor[] | undefined> = {
  Identity: (_node, _inputs, x) => [x!],
  Dropout: (...a) => FOLDERS.Identity(...a),
  Shape: (node, _inputs, x) => {
    const start = norm(attr(node, 'start', 0), x!.dims.length);
    const end = node.attrs.has('end') ? norm(attr(node, 'end', 0), x!.dims.length) : x!.dims.length;
    return [tensor('int', [end - start], x!.dims.slice(start, end))];
  },
  Div: (_node, inputs, x) => [elementwise([x!, inputs[1]!], x!.dtype === 'int' ? (a, b) => Math.trunc(a / b) : (a, b) => a / b)],
  Equal: (_node, inputs, x) => [elementwise([x!, inputs[1]!], (a, b) => (a === b ? 1 : 0), 'bool')],
  Less: (_node, inputs, x) => [elementwise([x!, inputs[1]!], (a, b) => (a < b ? 1 : 0), 'bool')],
  Greater: (_node, inputs, x) => [elementwise([x!, inputs[1]!], (a, b) => (a > b ? 1 : 0), 'bool')],
  Not: (_node, _inputs, x) => [elementwise([x!], (a) => (a ? 0 : 1), 'bool')],
  Mod: (node, inputs, x) => {
    // Shape arithmetic (Swin's window padding); the batch placeholder has no remainder to take.
    if ([x!, inputs[1]!].some((t) => Array.from(t.data).some((v) => Math.abs(v) >= BATCH))) return undefined;
    const c = attr(node, 'fmod', 0) === 1;
    return [elementwise([x!, inputs[1]!], c ? (a, b) => a % b : (a, b) => a - Math.floor(a / b) * b)];
  },
  ScatterND: (node, inputs, x) => {
    // A mask built from shapes (Swin's shifted windows): data with `updates` written at `indices`.
    const reduction = node.attrs.get('reduction');
    if (reduction !== undefined && reduction !== 'none') return undefined;
    const [indices, updates] = [inputs[1]!, inputs[2]!];
    const k = indices.dims[indices.dims.length - 1];
    const st = strides(x!.dims);
    const slice = size(x!.dims.slice(k));
    const out = Float64Array.from(x!.data);
    const n = size(indices.dims.slice(0, -1));
    for (let i = 0; i < n; i++) {
      let base = 0;
      for (let j = 0; j < k; j++) {
        const v = indices.data[i * k + j];
        base += (v < 0 ? v + x!.dims[j] : v) * st[j];
      }
      for (let e = 0; e < slice; e++) out[base + e] = updates.data[i * slice + e];
    }
    return [{ dtype: x!.dtype, dims: x!.dims, data: out }];
  },
  Where: (_node, inputs, x) => [elementwise([x!, inputs[1]!, inputs[2]!], (c, a, b) => (c ? a : b), inputs[1]!.dtype)],
  Cast: (node, _inputs, x) => {
    const to = attr(node, 'to', 1);
    const dtype: Tensor['dtype'] = [1, 10, 11, 16].includes(to) ? 'float' : to === 9 ? 'bool' : 'int';
    return [
      {
        dtype,
        dims: x!.dims,
        data: Float64Array.from(x!.data, (v) => (dtype === 'int' ? Math.trunc(v) : dtype === 'bool' ? (v ? 1 : 0) : v)),
      },
    ];
  },
  Constant: (node, _inputs, _x) => {
    const v =
      node.attrs.get('value') ??
      node.attrs.get('value_float') ??
      node.attrs.get('value_floats') ??
      node.attrs.get('value_int') ??
      node.attrs.get('value_ints');
    if (v === undefined) return undefined;
    if (typeof v === 'number') return [tensor(node.attrs.has('value_int') ? 'int' : 'float', [], [v])];
    if (Array.isArray(v)) return [tensor(node.attrs.has('value_ints') ? 'int' : 'float', [v.length], v as number[])];
    return [v as Tensor];
  },
  ConstantOfShape: (node, _inputs, x) => {
    const value = node.attrs.get('value') as Tensor | undefined;
    const dims = ints(x);
    if (dims.includes(BATCH)) return undefined; // one per image: the converter decides
    return [{ dtype: value?.dtype ?? 'float', dims, data: new Float64Array(size(dims)).fill(value ? value.data[0] : 0) }];
  },
  Range: (_node, inputs, x) => {
    const [s, l, d] = inputs.map((t) => t!.data[0]);
    const n = Math.max(Math.ceil((l - s) / d), 0);
    return [
      tensor(
        x!.dtype,
        [n],
        Array.from({ length: n }, (_, i) => s + i * d),
      ),
    ];
  },
  Reshape: (node, inputs, x) => {
    const shape = ints(inputs[1]);
    const out = shape.map((d, i) => (d === 0 && !attr(node, 'allowzero', 0) ? x!.dims[i] : d));
    const known = out.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
    return [{ ...x!, dims: out.map((d) => (d === -1 ? x!.data.length / known : d)) }];
  },
  Flatten: (node, _inputs, x) => {
    const a = norm(attr(node, 'axis', 1), x!.dims.length);
    return [{ ...x!, dims: [size(x!.dims.slice(0, a)), size(x!.dims.slice(a))] }];
  },
  Squeeze: (node, inputs, x) => {
    const axes = (axesOf(node, inputs, 1) ?? x!.dims.flatMap((d, i) => (d === 1 ? [i] : []))).map((a) => norm(a, x!.dims.length));
    return [{ ...x!, dims: x!.dims.filter((_, i) => !axes.includes(i)) }];
  },
  Unsqueeze: (node, inputs, x) => {
    const axes = axesOf(node, inputs, 1)!;
    const r = x!.dims.length + axes.length;
    const at = axes.map((a) => norm(a, r));
    const dims: number[] = [];
    let k = 0;
    for (let i = 0; i < r; i++) dims.push(at.includes(i) ? 1 : x!.dims[k++]);
    return [{ ...x!, dims }];
  },
  Concat: (node, inputs, _x) => {
    const ts = inputs.filter((t): t is Tensor => !!t && t.data.length > 0);
    const a = norm(attr(node, 'axis', 0), ts[0].dims.length);
    const outer = size(ts[0].dims.slice(0, a));
    const data: number[] = [];
    for (let o = 0; o < outer; o++)
      for (const t of ts) {
        const inner = size(t.dims.slice(a));
        for (let i = 0; i < inner; i++) data.push(t.data[o * inner + i]);
      }
    return [
      tensor(
        ts[0].dtype,
        ts[0].dims.map((d, i) => (i === a ? ts.reduce((s, t) => s + t.dims[a], 0) : d)),
        data,
      ),
    ];
  },
  Gather: (node, inputs, x) => {
    const a = norm(attr(node, 'axis', 0), x!.dims.length);
    const idx = ints(inputs[1]).map((i) => (i < 0 ? i + x!.dims[a] : i));
    const taken = pick(
      x!,
      x!.dims.map((d, i) => (i === a ? idx : all(d))),
    );
    const idxDims = inputs[1]!.dims;
    return [{ ...taken, dims: [...x!.dims.slice(0, a), ...idxDims, ...x!.dims.slice(a + 1)] }];
  },
  Slice: (node, inputs, x) => {
    const r = x!.dims.length;
    const starts = node.attrs.has('starts') ? (node.attrs.get('starts') as number[]) : ints(inputs[1]);
    const ends = node.attrs.has('ends') ? (node.attrs.get('ends') as number[]) : ints(inputs[2]);
    const axes = (
      node.attrs.has('axes') ? (node.attrs.get('axes') as number[]) : inputs[3] ? ints(inputs[3]) : starts.map((_, i) => i)
    ).map((a) => norm(a, r));
    const steps = inputs[4] ? ints(inputs[4]) : starts.map(() => 1);
    const keep = x!.dims.map((d, i) => {
      const k = axes.indexOf(i);
      return k < 0 ? all(d) : sliceIndices(d, starts[k], ends[k], steps[k]);
    });
    return [pick(x!, keep)];
  },
  Transpose: (node, _inputs, x) => {
    const perm = attr(
      node,
      'perm',
      x!.dims.map((_, i) => x!.dims.length - 1 - i),
    );
    return [transposeTensor(x!, perm)];
  },
  Expand: (_node, inputs, x) => {
    if (ints(inputs[1]).includes(BATCH)) return undefined; // one per image: the converter decides
    const dims = broadcastDims(x!.dims, ints(inputs[1]));
    return [elementwise([x!, { dtype: x!.dtype, dims, data: new Float64Array(size(dims)) }], (a) => a)];
  },
  ReduceProd: (node, inputs, x) => {
    if (x!.dims.length > 1 || (axesOf(node, inputs, 1) ?? [0]).some((a) => norm(a, 1) !== 0)) return undefined;
    const values = Array.from(x!.data);
    const v = node.opType === 'ReduceProd' ? values.reduce((a, b) => a * b, 1) : values.reduce((a, b) => a + b, 0);
    return [tensor(x!.dtype, attr(node, 'keepdims', 1) ? [1] : [], [v])];
  },
  ReduceSum: (...a) => FOLDERS.ReduceProd(...a),
};

/** Operators fold() evaluates: the element-wise ones and FOLDERS. */
export const FOLDED = [...Object.keys(FOLDERS), ...Object.keys(ELEMENTWISE)];

/**
 * The outputs of `node` when every input is a constant (undefined inputs are omitted optional ones),
 * or undefined when this op is not folded here.
 */
export function fold(node: OnnxNodeInfo, inputs: (Tensor | undefined)[]): Tensor[] | undefined {
  const op = node.opType;
  if (Object.hasOwn(ELEMENTWISE, op))
    return [
      elementwise(
        inputs.filter((t): t is Tensor => !!t),
        ELEMENTWISE[op],
      ),
    ];
  return Object.hasOwn(FOLDERS, op) ? FOLDERS[op](node, inputs, inputs[0]) : undefined;
}
