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
