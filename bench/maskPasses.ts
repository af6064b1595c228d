import onnxProto from 'onnx-proto';

/**
 * Counterfactual gradient graphs for bench:vjp-profile: what the 0/1 masks of ReLU-like activations cost
 * a gradient, measured on the real graph rather than on a sample tensor. A mask is a Cast of a boolean
 * (a comparison, or an And / Or / Not of comparisons), possibly cut by shape ops, that a Mul applies to
 * the gradient rows. The graphs this writes compute wrong values: they are for timing only.
 * - 'prebuilt': each mask is replaced by the float value its first comparison reads (the activation's
 *   output), so the rows are still multiplied but no mask is built: the cost of the multiplies alone.
 * - 'none': each multiply by a mask is replaced by its other operand: the gradient without masks.
 * Nodes no output needs any more (the comparisons) are dropped, as ONNX Runtime would not run them.
 */

const { onnx } = onnxProto;
type Node = InstanceType<typeof onnx.NodeProto>;

/** Ops that move or cut values without reading their type. */
const SHAPE_OPS = new Set(['Reshape', 'Slice', 'Expand', 'Unsqueeze', 'Squeeze', 'Flatten']);
const LOGIC = new Set(['And', 'Or', 'Not', 'Xor']);
const COMPARISONS = new Set(['Greater', 'Less', 'GreaterOrEqual', 'LessOrEqual', 'Equal']);

export type MaskCounterfactual = 'prebuilt' | 'none';

/** The rewritten model and how many masks it touched. */
export function withoutMaskPasses(model: Uint8Array, mode: MaskCounterfactual): { bytes: Uint8Array; masks: number } {
  const m = onnx.ModelProto.decode(model);
  const graph = m.graph!;
  const nodes = graph.node as Node[];
  const producer = new Map<string, Node>();
  for (const n of nodes) for (const o of n.output!) producer.set(o, n);
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
  const isMask = (cast: Node | undefined): cast is Node => {
    if (cast?.opType !== 'Cast') return false;
    const root = climb(cast.input![0]).root;
    return !!root && (LOGIC.has(root.opType!) || COMPARISONS.has(root.opType!));
  };
  let masks = 0;
  if (mode === 'none') {
    for (const n of nodes) {
      if (n.opType !== 'Mul') continue;
      const k = [0, 1].find((i) => isMask(climb(n.input![i]).root));
      if (k === undefined) continue;
      Object.assign(n, { opType: 'Identity', input: [n.input![1 - k]], attribute: [] });
      masks++;
    }
  } else {
    for (const cast of nodes.filter(isMask)) {
      const { shapeOps, root } = climb(cast.input![0]);
      // Casts that share their cuts with one rewritten before already read floats.
      if (LOGIC.has(root!.opType!) || COMPARISONS.has(root!.opType!)) {
        let comparison = root!;
        while (LOGIC.has(comparison.opType!)) comparison = climb(comparison.input![0]).root!;
        const floats = comparison.input![0];
        // The shape op nearest the comparison cuts the floats instead of the booleans.
        if (shapeOps.length) shapeOps[shapeOps.length - 1].input![0] = floats;
        else cast.input = [floats];
      }
      Object.assign(cast, { opType: 'Identity', attribute: [] });
      masks++;
    }
  }
  const needed = new Set(graph.output!.map((o) => o.name!));
  const kept: Node[] = [];
  for (const n of [...nodes].reverse())
    if (n.output!.some((o) => needed.has(o))) {
      kept.push(n);
      for (const i of n.input!) needed.add(i);
    }
  graph.node = kept.reverse();
  graph.initializer = graph.initializer!.filter((t) => needed.has(t.name!));
  return { bytes: onnx.ModelProto.encode(m).finish(), masks };
}
