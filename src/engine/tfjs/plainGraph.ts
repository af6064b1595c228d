import * as tf from '../../tf.js';

/** A network as TF.js steps (closures over weight tensors), built from a Net by tfjsNet.ts. */

export type Fn = (inputs: tf.Tensor[]) => tf.Tensor;
export interface Step {
  name: string;
  inputs: string[];
  fn: Fn;
}
export interface PlainGraph {
  inputName: string;
  steps: Step[];
  output: string;
  /** Weights owned by the graph; disposed with it. */
  owned: tf.Tensor[];
}

/** Index of the last step that reads each value (the output is read "after" the last step). */
const lastUses = new WeakMap<PlainGraph, Map<string, number>>();
function lastUse(g: PlainGraph): Map<string, number> {
  let m = lastUses.get(g);
  if (!m) {
    m = new Map();
    g.steps.forEach((s, i) => s.inputs.forEach((n) => m!.set(n, i)));
    m.set(g.output, g.steps.length);
    lastUses.set(g, m);
  }
  return m;
}

/**
 * Runs the compiled graph on a preprocessed batch. Outside a gradient tape, each activation is freed
 * after its last reader, so a forward pass holds a few activations instead of all of them (the
 * batch an evaluation can run grows accordingly).
 */
export function runPlainGraph(g: PlainGraph, x: tf.Tensor): tf.Tensor {
  const values = new Map<string, tf.Tensor>([[g.inputName, x]]);
  const free = !tf.engine().isTapeOn();
  const last = lastUse(g);
  g.steps.forEach((s, i) => {
    const ins = s.inputs.map((n) => {
      const t = values.get(n);
      if (!t) throw new Error(`internal: missing tensor ${n} for ${s.name}`);
      return t;
    });
    values.set(s.name, s.fn(ins));
    if (!free) return;
    for (const n of new Set(s.inputs)) {
      if (n === g.inputName || last.get(n) !== i) continue;
      const t = values.get(n)!;
      values.delete(n);
      // Identity steps alias their input: free a tensor only when no live name still holds it.
      if (![...values.values()].includes(t)) t.dispose();
    }
  });
  return values.get(g.output)!;
}
