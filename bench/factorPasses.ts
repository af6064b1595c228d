import onnxProto from 'onnx-proto';
import { FACTOR } from '../src/engine/ops/activation.js';
import { liveNodes } from '../src/engine/onnx/builder.js';

/**
 * Counterfactual gradient graphs for bench:vjp-profile: what the activations' derivative factors (the
 * 0/1 masks of ReLU-like activations, SiLU's floats) cost a gradient, measured on the real graph rather
 * than on a sample tensor. The exporter names each factor's value 'factor_<n>' (activationFactor); a Mul
 * applies it to the backward rows, possibly through shape ops (an image's rows, a phase's cut). The
 * graphs this writes compute wrong values: they are for timing only.
 * - 'prebuilt': each factor is replaced by the forward value it is computed from (a mask by the value
 *   its comparison reads), so the rows are still multiplied but no factor is built: the products alone.
 * - 'none': each product with a factor is replaced by its other operand: the gradient without factors.
 * Nodes no output needs any more are dropped, as ONNX Runtime would not run them.
 */

const { onnx } = onnxProto;
type Node = InstanceType<typeof onnx.NodeProto>;

/** Ops that move or cut values without reading their type. */
const SHAPE_OPS = new Set(['Reshape', 'Slice', 'Expand', 'Unsqueeze', 'Squeeze', 'Flatten']);
/** Ops whose output is boolean, or (Cast) a mask's floats. */
const MASK_OPS = new Set(['And', 'Or', 'Not', 'Xor', 'Greater', 'Less', 'GreaterOrEqual', 'LessOrEqual', 'Equal', 'Cast']);
/** Element-wise ops a factor is built of (beside MASK_OPS). */
const ELEMENTWISE = new Set(['Add', 'Sub', 'Mul', 'Div', 'Neg', 'Exp', 'Pow', 'Sigmoid', 'Max', 'Min', 'Where', 'Erf', 'HardSigmoid']);
const isFactor = (value: string) => value.startsWith(`${FACTOR}_`);

export type FactorCounterfactual = 'prebuilt' | 'none';

/** The rewritten model and how many factors it touched. */
export function withoutFactorPasses(model: Uint8Array, mode: FactorCounterfactual): { bytes: Uint8Array; factors: number } {
  const m = onnx.ModelProto.decode(model);
  const graph = m.graph!;
  const nodes = graph.node as Node[];
  const producer = new Map<string, Node>();
  const consumers = new Map<string, number>();
  for (const n of nodes) {
    for (const o of n.output!) producer.set(o, n);
    for (const i of n.input!) consumers.set(i, (consumers.get(i) ?? 0) + 1);
  }
  /** The nodes from `value` up through shape ops, and the first node that is not one. */
  const climb = (value: string): { shapeOps: Node[]; root: Node | undefined } => {
    const shapeOps: Node[] = [];
    let root = producer.get(value);
    while (root && SHAPE_OPS.has(root.opType!)) {
      shapeOps.push(root);
      root = producer.get(root.input![0]);
    }
    return { shapeOps, root };
  };
  /**
   * The forward value a factor is computed from: down its first computed input, through masks and
   * through values only the factor reads, to one that something else reads too.
   */
  const sourceOf = (node: Node): string | undefined => {
    const value = node.input!.find((i) => producer.has(i));
    if (value === undefined) return undefined;
    const p = producer.get(value)!;
    const ownValue = consumers.get(value) === 1 && ELEMENTWISE.has(p.opType!);
    return MASK_OPS.has(p.opType!) || ownValue ? (sourceOf(p) ?? value) : value;
  };
  const factors = nodes.filter((n) => isFactor(n.output![0]));
  if (mode === 'none') {
    for (const n of nodes) {
      if (n.opType !== 'Mul') continue;
      const k = [0, 1].find((i) => {
        const root = climb(n.input![i]).root;
        return root !== undefined && isFactor(root.output![0]);
      });
      if (k !== undefined) Object.assign(n, { opType: 'Identity', input: [n.input![1 - k]], attribute: [] });
    }
  } else {
    for (const f of factors) {
      // A mask's Cast may read it through cuts (phases), which then cut the source instead.
      const { shapeOps, root } = f.opType === 'Cast' ? climb(f.input![0]) : { shapeOps: [], root: f };
      // Casts that share their cuts with one rewritten before already read floats.
      const source = root && MASK_OPS.has(root.opType!) ? sourceOf(root) : root === f ? sourceOf(f) : undefined;
      if (source !== undefined) {
        if (shapeOps.length) shapeOps[shapeOps.length - 1].input![0] = source;
        else f.input = [source];
      }
      if (source !== undefined || shapeOps.length) Object.assign(f, { opType: 'Identity', input: [f.input![0]], attribute: [] });
    }
  }
  const live = liveNodes(
    nodes,
    graph.output!.map((o) => o.name!),
  );
  graph.node = live.nodes;
  graph.initializer = graph.initializer!.filter((t) => live.needed.has(t.name!));
  return { bytes: onnx.ModelProto.encode(m).finish(), factors: factors.length };
}
