import { writeFileSync } from 'node:fs';
import type { Net, NodeOp, Weights } from '../src/engine/net.js';

/**
 * Writes a Net as JSON (structure) + one float32 file (weights), for the PyTorch references
 * (bench/torch_net.py rebuilds it; torch_ref.py, art_ref.py and torch_deepfool.py use that): the
 * same network and weights run under PyTorch autograd.
 */
export function writeNetFiles(net: Net, inputShape: number[], jsonPath: string, binPath: string): void {
  const chunks: Float32Array[] = [];
  let offset = 0;
  const ref = (w?: Weights) => {
    if (!w) return null;
    chunks.push(w.data);
    const r = { offset, shape: w.shape };
    offset += w.data.length;
    return r;
  };
  const op = (o: NodeOp): Record<string, unknown> => {
    switch (o.kind) {
      case 'conv':
      case 'dense':
        return { ...o, kernel: ref(o.kernel), bias: ref(o.bias) };
      case 'affine':
        return { ...o, scale: ref(o.scale), shift: ref(o.shift) };
      case 'binary':
        return { ...o, constant: o.constant ? { weights: ref(o.constant.weights), first: o.constant.first } : null };
      default:
        return { ...o };
    }
  };
  const nodes = net.nodes.map((n) => ({ name: n.name, inputs: n.inputs, op: op(n.op) }));
  writeFileSync(jsonPath, JSON.stringify({ input: net.input, output: net.output, inputShape, nodes }));
  const all = new Float32Array(offset);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  writeFileSync(binPath, new Uint8Array(all.buffer));
}
