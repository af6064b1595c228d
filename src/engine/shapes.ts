import { UsageError } from '../errors.js';
import type { Net } from './net.js';
import { OPS } from './ops/registry.js';
import type { Shape } from './ops/types.js';

/**
 * The shape (without batch) of every value of `net` for input images of `inputShape`, from the ops'
 * shape rules; a node whose inputs do not fit is named in a one-line error.
 */
export function inferShapes(net: Net, inputShape: Shape): Map<string, Shape> {
  const shapes = new Map<string, Shape>([[net.input, inputShape]]);
  for (const n of net.nodes) {
    const inputs = n.inputs.map((i) => {
      const s = shapes.get(i);
      if (!s) throw new UsageError(`node ${n.name} (${n.op.kind}): input ${i} is not produced before it`);
      return s;
    });
    try {
      shapes.set(n.name, (OPS[n.op.kind].shape as (op: typeof n.op, xs: Shape[]) => Shape)(n.op, inputs));
    } catch (e) {
      if (e instanceof UsageError) throw e;
      throw new UsageError(`node ${n.name} (${n.op.kind}): ${(e as Error).message}`);
    }
  }
  if (!shapes.has(net.output)) throw new UsageError(`the network's output ${net.output} is not produced by any node`);
  return shapes;
}

/**
 * Multiply-adds of one image's forward pass through the convolutions, dense layers and matrix products
 * (the rest is small beside them): a static measure of a model's cost, for sizing work to it.
 */
export function multiplyAdds(net: Net, inputShape: Shape): number {
  const shapes = inferShapes(net, inputShape);
  const count = (s: Shape) => s.reduce((a, b) => a * b, 1);
  let total = 0;
  for (const n of net.nodes) {
    const out = shapes.get(n.name)!;
    const op = n.op;
    if (op.kind === 'conv') total += count(out) * op.kernel.shape[0] * op.kernel.shape[1] * op.kernel.shape[2];
    else if (op.kind === 'dense') total += count(out) * op.kernel.shape[0];
    else if (op.kind === 'matmul') {
      const a = shapes.get(n.inputs[0])!;
      total += count(out) * a[a.length - 1];
    }
  }
  return total;
}
