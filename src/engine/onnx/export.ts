import type { Net, NodeOp } from '../net.js';
import { OPS } from '../ops/registry.js';
import type { Layout, LayoutNeed, OnnxOp, Shape } from '../ops/types.js';
import { inferShapes } from '../shapes.js';
import { DerivedWeights, OnnxEmitter, OnnxNode, type Device } from './emit.js';
import type { WeightStore } from './builder.js';

/**
 * Exports a Net to ONNX: a forward model (x -> logits), an evaluation model (uint8 pixels and v ->
 * logits) and a vector-Jacobian model (x, dy -> logits, dx = J^T dy) whose backward half is written
 * op by op by the ops' own modules, because ONNX Runtime has no autodiff. This file only walks the
 * graph: it picks each rank-4 value's storage layout (NCHW where convolutions and pools need it, as
 * the Net holds it elsewhere), moves values between layouts when an op needs the other one, and sums
 * the gradient contributions of every value. Inputs and dx are NHWC like the rest of the project.
 */

/** A Net the exporter cannot express exactly; the caller keeps the TF.js engine. */
export class OnnxUnsupported extends Error {
  override name = 'OnnxUnsupported';
}

type AnyOnnxOp = OnnxOp<NodeOp>;
const onnxOf = (op: NodeOp) => OPS[op.kind].onnx as unknown as AnyOnnxOp;

/**
 * The storage layouts of a node's inputs: what the op needs, or (for 'any') what most rank-4 inputs
 * already have; blocked where one of them is, the others are too or are 1x1 pixels (an SE block's
 * scale: a reshape away, emit.ts convert), and the op may run on blocked values (`blocked`).
 */
function inputLayouts(need: LayoutNeed, shapes: Shape[], current: Layout[], blocked: boolean): Layout[] {
  const rank4 = shapes.map((s) => s.length === 3);
  // Broadcasting between a rank-4 value and one of another rank aligns NHWC axes: stay plain.
  const mixed = rank4.some(Boolean) && !rank4.every(Boolean);
  const pixel = (s: Shape) => s[0] === 1 && s[1] === 1;
  if (
    need === 'any' &&
    blocked &&
    !mixed &&
    rank4.every(Boolean) &&
    current.includes('nchwc') &&
    current.every((l, i) => l === 'nchwc' || pixel(shapes[i]))
  )
    return rank4.map(() => 'nchwc');
  let chosen: Layout =
    need === 'any'
      ? mixed
        ? 'plain'
        : current.filter((l, i) => rank4[i] && l !== 'plain').length * 2 >= rank4.filter(Boolean).length
          ? 'nchw'
          : 'plain'
      : need;
  if (need === 'any' && !rank4.some(Boolean)) chosen = 'plain';
  return rank4.map((r) => (r ? chosen : 'plain'));
}

interface Built {
  e: OnnxEmitter;
  /** ONNX value of each Net value in each layout it has been needed in; [0] is its own. */
  values: Map<string, Map<Layout, string>>;
  own: Map<string, Layout>;
  nodes: Map<string, OnnxNode<NodeOp>>;
}

/** The forward graph from the input value 'x' (NHWC) up to the logits. */
function forwardGraph(net: Net, shapes: Map<string, Shape>, e: OnnxEmitter): Built {
  const b: Built = {
    e,
    values: new Map([[net.input, new Map([['plain' as Layout, 'x']])]]),
    own: new Map([[net.input, 'plain']]),
    nodes: new Map(),
  };
  const get = (name: string, layout: Layout) => {
    const have = b.values.get(name)!;
    let v = have.get(layout);
    if (!v) {
      v = e.convert(have.get(b.own.get(name)!)!, b.own.get(name)!, layout, shapes.get(name)!);
      have.set(layout, v);
    }
    return v;
  };
  const needOf = (n: Net['nodes'][number]) => {
    const def = onnxOf(n.op);
    return typeof def.layout === 'function'
      ? def.layout(
          n.op,
          n.inputs.map((i) => shapes.get(i)!),
          e.block,
        )
      : def.layout;
  };
  const consumers = new Map<string, Net['nodes']>();
  for (const n of net.nodes) for (const i of new Set(n.inputs)) consumers.set(i, [...(consumers.get(i) ?? []), n]);
  /** What the chain of sole consumers after `name` first needs ('any' when it branches or never says). */
  const ahead = (name: string): LayoutNeed => {
    const next = consumers.get(name);
    if (next?.length !== 1) return 'any';
    const need = needOf(next[0]);
    return need === 'any' ? ahead(next[0].name) : need;
  };
  for (const n of net.nodes) {
    const def = onnxOf(n.op);
    const inShapes = n.inputs.map((i) => shapes.get(i)!);
    const outShape = shapes.get(n.name)!;
    let need = needOf(n);
    // Steps on the input image itself (the card's preprocessing) run in the layout the first real layer
    // needs: the one transpose comes first, and a per-channel affine becomes one NCHW batch-norm kernel
    // (as Mul and Add on NHWC it took as long as MobileNet v3 small's convolutions).
    const next = ahead(n.name);
    if (need === 'any' && n.inputs.every((i) => i === net.input) && inShapes[0].length === 3 && (next === 'nchw' || next === 'nchwc'))
      need = 'nchw';
    const layouts = inputLayouts(
      need,
      inShapes,
      n.inputs.map((i) => b.own.get(i)!),
      def.blocked?.(
        n.op,
        inShapes,
        inShapes.some((s) => e.padsChannels(s)),
      ) ?? false,
    );
    const first4 = layouts.find((_, i) => inShapes[i].length === 3);
    const outLayout: Layout = outShape.length !== 3 ? 'plain' : need === 'any' ? (first4 ?? 'plain') : need;
    const node = new OnnxNode<NodeOp>(
      e,
      n.name,
      n.op,
      n.inputs.map((i, k) => get(i, layouts[k])),
      inShapes,
      outShape,
      layouts,
      outLayout,
    );
    b.nodes.set(n.name, node);
    b.values.set(n.name, new Map([[outLayout, def.forward(node)]]));
    b.own.set(n.name, outLayout);
  }
  return b;
}

function build(
  net: Net,
  inputShape: Shape,
  shapes: Map<string, Shape>,
  kind: 'forward' | 'vjp' | 'images',
  target: Device,
  derived: DerivedWeights,
  weights: WeightStore | undefined,
  block: number,
): Uint8Array {
  // Blocked values only in the gradient graph: ONNX Runtime blocks the forward graphs' convolutions
  // itself, with nothing element-wise between them that it cannot block.
  const e = new OnnxEmitter('x', target, derived, weights, kind === 'vjp' && target === 'cpu' ? block : 0);
  const g = e.g;
  if (kind === 'images') g.opMulti('Clip', [g.op('Add', [g.op('Cast', ['pixels'], { to: 1 }), 'v']), g.scalar(0), g.scalar(255)], ['x']);
  const b = forwardGraph(net, shapes, e);
  const k = shapes.get(net.output)!;
  if (k.length !== 1) throw new OnnxUnsupported(`output ${net.output} has shape [${k}], expected [classes]`);
  g.opMulti('Identity', [b.values.get(net.output)!.get('plain')!], ['logits']);
  if (kind === 'forward') return g.encode([['x', ['N', ...inputShape]]], [['logits', ['N', k[0]]]]);
  if (kind === 'images')
    return g.encode(
      [
        ['pixels', ['N', ...inputShape], 'uint8'],
        ['v', inputShape],
      ],
      [['logits', ['N', k[0]]]],
    );
  // Backward rows: K cotangents per image, dy [N, K, classes] -> [N*K, classes]; gradients kept in each value's own layout.
  const grads = new Map<string, string[]>([[net.output, [g.op('Reshape', ['dy', g.ints([-1, k[0]])], {}, 'dy_rows')]]]);
  for (const n of [...net.nodes].reverse()) {
    const parts = grads.get(n.name);
    if (!parts) continue; // no path to the output: no gradient
    const node = b.nodes.get(n.name)!;
    const dxs = onnxOf(n.op).backward(node, e.sum(parts));
    n.inputs.forEach((input, i) => {
      const dx = dxs[i];
      if (!dx) return;
      grads.set(input, [...(grads.get(input) ?? []), e.convert(dx, node.layouts[i], b.own.get(input)!, shapes.get(input)!)]);
    });
  }
  const parts = grads.get(net.input);
  if (!parts) throw new OnnxUnsupported('the output does not depend on the input');
  g.opMulti('Reshape', [e.sum(parts), g.op('Concat', [e.batch(), g.ints([-1, ...inputShape])], { axis: 0 })], ['dx']);
  return g.encode(
    [
      ['x', ['N', ...inputShape]],
      ['dy', ['N', 'K', k[0]]],
    ],
    [
      ['logits', ['N', k[0]]],
      ['dx', ['N', 'K', ...inputShape]],
    ],
  );
}

export interface OnnxModels {
  /** Number of logits. */
  classes: number;
  /** x [N,H,W,C] -> logits [N,classes]. */
  forward: Uint8Array;
  /**
   * pixels [N,H,W,C] uint8, v [H,W,C] -> logits of clip(pixels + v, 0, 255): evaluation straight from
   * a dataset's stored bytes, with the perturbation added inside the graph.
   */
  images: Uint8Array;
  /** x [N,H,W,C], dy [N,K,classes] -> logits [N,classes], dx [N,K,H,W,C]: K cotangents per image, one forward pass. */
  vjp: Uint8Array;
}

/**
 * The ONNX models of `net` on images of `inputShape` ([H, W, C]) (`only`: just these), written for the
 * execution provider `target` (default the CPU's); throws OnnxUnsupported.
 */
export function exportOnnx(
  net: Net,
  inputShape: number[],
  only?: (keyof Omit<OnnxModels, 'classes'>)[],
  target: Device = 'cpu',
  block = 0,
): OnnxModels {
  const empty = new Uint8Array(0);
  const models: OnnxModels = { classes: 0, forward: empty, images: empty, vjp: empty };
  models.classes = exportOnnxEach(
    net,
    inputShape,
    only ?? ['forward', 'images', 'vjp'],
    target,
    (kind, bytes) => (models[kind] = bytes),
    undefined,
    block,
  );
  return models;
}

/**
 * The ONNX models `kinds` of `net`, each handed to `take` as soon as it is written. With `weights`,
 * every weight array goes to that store once and the models hold only their graphs (kilobytes): the
 * three models of VGG-16 with their weights inside are 2.2 GB, and ONNX Runtime maps external weights
 * from the file instead of parsing them out of the model. With `block` (ONNX Runtime's channel block
 * on this machine, nchwc.ts), the gradient graph holds blocked values where it can. Returns the
 * number of logits; throws OnnxUnsupported.
 */
export function exportOnnxEach(
  net: Net,
  inputShape: number[],
  kinds: (keyof Omit<OnnxModels, 'classes'>)[],
  target: Device,
  take: (kind: keyof Omit<OnnxModels, 'classes'>, bytes: Uint8Array) => void,
  weights?: WeightStore,
  block = 0,
): number {
  const shapes = inferShapes(net, inputShape);
  const derived = new DerivedWeights();
  try {
    for (const kind of kinds) take(kind, build(net, inputShape, shapes, kind, target, derived, weights, block));
    return shapes.get(net.output)![0];
  } catch (e) {
    if (e instanceof OnnxUnsupported) throw e;
    throw new OnnxUnsupported((e as Error).message);
  }
}
