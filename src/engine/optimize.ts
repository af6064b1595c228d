import type { Net, NetNode, NodeOp } from './net.js';

/**
 * Net-level simplifications for imported graphs, each exact: a batch-norm (affine on channels) folded
 * into the convolution it alone follows, x * sigmoid(x) (SiLU, as PyTorch exports it) made one
 * activation, element-wise activations fused into the node they alone follow, identities dropped. Fewer nodes make every runtime faster (TF.js most: it runs node by node).
 */

type Fusable = Extract<NodeOp, { act: unknown }>;
const FUSES_ACT = new Set(['conv', 'dense', 'binary', 'concat']);

function consumers(net: Net): Map<string, number> {
  const c = new Map<string, number>();
  for (const n of net.nodes) for (const i of n.inputs) c.set(i, (c.get(i) ?? 0) + 1);
  c.set(net.output, (c.get(net.output) ?? 0) + 1);
  return c;
}

/** Replaces `later` (whose only input is `earlier`, read by nothing else) with `earlier` under later's name. */
function merge(nodes: NetNode[], earlier: NetNode, later: NetNode, op: NodeOp): void {
  nodes[nodes.indexOf(earlier)] = { name: later.name, inputs: earlier.inputs, op };
  nodes.splice(nodes.indexOf(later), 1);
}

function foldAffine(conv: Extract<NodeOp, { kind: 'conv' }>, a: Extract<NodeOp, { kind: 'affine' }>): NodeOp {
  const channels = a.scale.data.length;
  const kernel = conv.kernel.data.map((v, i) => v * a.scale.data[i % channels]);
  const bias = a.shift.data.map((s, c) => (conv.bias ? conv.bias.data[c] * a.scale.data[c] : 0) + s);
  return { ...conv, kernel: { data: kernel, shape: conv.kernel.shape }, bias: { data: bias, shape: [channels] } };
}

/** `n` as x * sigmoid(x), where the sigmoid node is read by `n` alone: its x and sigmoid node. */
function siluOf(n: NetNode, named: Map<string, NetNode>, uses: Map<string, number>): { x: string; sigmoid: NetNode } | undefined {
  if (n.op.kind !== 'binary' || n.op.op !== 'mul' || n.op.act !== 'linear' || n.op.constant || n.inputs.length !== 2) return undefined;
  for (const [a, b] of [n.inputs, [...n.inputs].reverse()]) {
    const s = named.get(b);
    if (s?.op.kind === 'act' && s.op.act === 'sigmoid' && s.inputs[0] === a && uses.get(s.name) === 1) return { x: a, sigmoid: s };
  }
  return undefined;
}

export function optimizeNet(net: Net): Net {
  const nodes = [...net.nodes];
  const byName = () => new Map(nodes.map((n) => [n.name, n]));
  // Identities: readers read the identity's input instead.
  for (const n of [...nodes].filter((x) => x.op.kind === 'identity' && x.name !== net.output)) {
    const src = n.inputs[0];
    for (const m of nodes) m.inputs = m.inputs.map((i) => (i === n.name ? src : i));
    nodes.splice(nodes.indexOf(n), 1);
  }
  let changed = true;
  while (changed) {
    changed = false;
    const uses = consumers({ ...net, nodes });
    const named = byName();
    for (const n of nodes) {
      const silu = siluOf(n, named, uses);
      if (silu) {
        // The sigmoid goes; the product becomes the activation of x, fusable into x's producer below.
        nodes.splice(nodes.indexOf(silu.sigmoid), 1);
        nodes[nodes.indexOf(n)] = { name: n.name, inputs: [silu.x], op: { kind: 'act', act: 'silu' } };
        changed = true;
        break;
      }
      if (n.inputs.length !== 1) continue;
      const p = named.get(n.inputs[0]);
      if (!p || uses.get(p.name) !== 1) continue;
      if (
        n.op.kind === 'affine' &&
        p.op.kind === 'conv' &&
        p.op.act === 'linear' &&
        [-1, 3].includes(n.op.axis ?? -1) &&
        n.op.scale.data.length === p.op.kernel.shape[3]
      ) {
        merge(nodes, p, n, foldAffine(p.op, n.op));
        changed = true;
        break;
      }
      if (n.op.kind === 'act' && n.op.act !== 'softmax' && FUSES_ACT.has(p.op.kind) && (p.op as Fusable).act === 'linear') {
        merge(nodes, p, n, { ...(p.op as Fusable), act: n.op.act } as NodeOp);
        changed = true;
        break;
      }
    }
  }
  return { ...net, nodes };
}
