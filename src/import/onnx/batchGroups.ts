import { BATCH } from './fold.js';

/**
 * ONNX values whose batch axis is moved or folded into another axis, as attention exports write them
 * (nn.MultiheadAttention: [tokens, batch, dim] -> [tokens, batch * heads, d]; timm: qkv permuted to
 * [3, batch, heads, tokens, d]). The Net keeps every value batch first, one image per row, so that each
 * image's gradient rows stay its own; such an ONNX value is a Net value plus `groups`: ONNX axis i is
 * the row-major product of Net axes groups[i] (Net axis 0 is the batch). Pure planning here; the
 * converter emits the transposes and reshapes the plans ask for.
 */

/** Net axes of a value, by ONNX axis. */
export type Groups = number[][];

/** The groups of a value whose ONNX axes are its Net axes. */
export const identityGroups = (rank: number): Groups => Array.from({ length: rank }, (_, i) => [i]);

const isIdentity = (p: number[]) => p.every((v, i) => v === i);
const product = (xs: number[]) => xs.reduce((a, b) => a * b, 1);

/** Size of Net axis a of a value of shape `shape` (batch excluded); the batch is BATCH. */
const sizeOf = (shape: number[], a: number) => (a === 0 ? BATCH : shape[a - 1]);

/** The ONNX dims of a grouped value, batch included (the batch counted as BATCH: what Shape() gives). */
export function onnxDims(groups: Groups, shape: number[]): number[] {
  return groups.map((g) => product(g.map((a) => sizeOf(shape, a))));
}

/** The ONNX dims for a message: [17, N*2, 8]. */
export function describeDims(groups: Groups, shape: number[]): string {
  return `[${groups
    .map((g) => {
      const rest = product(g.filter((a) => a !== 0).map((a) => shape[a - 1]));
      return g.includes(0) ? (rest === 1 ? 'N' : `N*${rest}`) : String(rest);
    })
    .join(', ')}]`;
}

/** A transpose of the Net value (null: none) and a reshape of it (null: none), and the groups after them. */
export interface Plan {
  order: number[] | null;
  shape: number[] | null;
  groups: Groups;
}

/**
 * The batch as ONNX axis 0 alone: the Net value that IS the ONNX value (axes in ONNX order, each group
 * merged into one axis). Null when the batch is elsewhere.
 */
export function plainPlan(groups: Groups, shape: number[]): Plan | null {
  if (groups[0].length !== 1 || groups[0][0] !== 0) return null;
  const order = groups.flat();
  const dims = groups.slice(1).map((g) => product(g.map((a) => shape[a - 1])));
  return {
    order: isIdentity(order) ? null : order,
    shape: groups.slice(1).every((g) => g.length === 1) ? null : dims,
    groups: identityGroups(groups.length),
  };
}

/**
 * The canonical Net value of a grouped value: the batch first, the other Net axes in ONNX order, the
 * axes of one ONNX axis merged into one (those on either side of the batch apart). Ops on the ONNX axes
 * that do not hold the batch (a dense layer on the last, softmax, matmul's two matrix axes) then act
 * on one Net axis each, and values with the same grouping line up axis for axis.
 */
export function canonicalPlan(groups: Groups, shape: number[]): Plan {
  const order = [0, ...groups.flat().filter((a) => a !== 0)];
  const at = (a: number) => order.indexOf(a);
  const ordered = groups.map((g) => g.map(at));
  const moved = order.slice(1).map((a) => shape[a - 1]);
  // Runs of consecutive non-batch axes within one ONNX axis become one axis.
  const runs: number[][] = [];
  for (const g of ordered) {
    let run: number[] = [];
    for (const a of g) {
      if (a === 0) {
        if (run.length) runs.push(run);
        run = [];
      } else run.push(a);
    }
    if (run.length) runs.push(run);
  }
  runs.sort((p, q) => p[0] - q[0]);
  const merged = runs.some((r) => r.length > 1);
  const runOf = new Map<number, number>();
  runs.forEach((r, i) => r.forEach((a) => runOf.set(a, i + 1)));
  const regrouped = ordered.map((g) => {
    const out: number[] = [];
    for (const a of g) {
      const n = a === 0 ? 0 : runOf.get(a)!;
      if (out[out.length - 1] !== n || n === 0) out.push(n);
    }
    return out;
  });
  return {
    order: isIdentity(order) ? null : order,
    shape: merged ? runs.map((r) => product(r.map((a) => moved[a - 1]))) : null,
    groups: regrouped,
  };
}

/** One dim of a reshape target: its size without the batch, and whether it holds the batch. */
export interface TargetDim {
  size: number;
  batch: boolean;
}

/**
 * Reads a reshape target as the exporter computed it from Shape(): BATCH * k is the batch times k, 0
 * copies the input's dim, -1 takes the rest (the batch too when no dim names it). Null when the batch
 * is not there exactly once.
 */
export function targetDims(target: number[], groups: Groups, shape: number[], allowZero: boolean): TargetDim[] | null {
  const input = onnxDims(groups, shape);
  const dims = target.map((d, i) => (d === 0 && !allowZero ? input[i] : d));
  const parsed = dims.map((d) => (d >= BATCH && d % BATCH === 0 ? { size: d / BATCH, batch: true } : { size: d, batch: false }));
  // Without the batch written out, a -1 holds it (`reshape(0, -1, d)`).
  const rest = parsed.find((d) => d.size === -1);
  if (rest && !parsed.some((d) => d.batch)) rest.batch = true;
  if (parsed.filter((d) => d.batch).length !== 1) return null;
  const known = product(parsed.filter((d) => d.size !== -1).map((d) => d.size));
  const whole = product(shape);
  return parsed.map((d) => (d.size === -1 ? { size: whole / known, batch: d.batch } : d));
}

/**
 * A reshape of a grouped value: the ONNX elements keep their row-major order, so the Net axes (in ONNX
 * order) are dealt out to the target dims, a Net axis split where a target dim takes only its outer
 * part (`dim` -> heads x d). The plan's shape splits the Net value's axes (the batch never splits);
 * a string says why the target cannot be followed.
 */
export function regroupPlan(groups: Groups, shape: number[], target: TargetDim[]): Plan | string {
  const atoms = groups.flat();
  const pieces: number[][] = shape.map(() => []);
  const units: number[] = [];
  const out: { axis: number; piece: number }[][] = [];
  let i = 0;
  let left = atoms.length ? sizeOf(shape, atoms[0]) : 1;
  const next = () => {
    i++;
    left = i < atoms.length ? sizeOf(shape, atoms[i]) : 1;
  };
  for (const t of target) {
    const group: { axis: number; piece: number }[] = [];
    let need = t.size;
    let batch = t.batch;
    while (need > 1 || batch) {
      if (i >= atoms.length) return `the target has more elements than the value`;
      const a = atoms[i];
      if (a === 0) {
        if (!batch) return 'the batch would land in another axis than the target puts it';
        group.push({ axis: 0, piece: 0 });
        batch = false;
        next();
      } else if (left === 1) {
        group.push({ axis: a, piece: pieces[a - 1].push(1) - 1 });
        next();
      } else if (need % left === 0) {
        group.push({ axis: a, piece: pieces[a - 1].push(left) - 1 });
        need /= left;
        next();
      } else if (left % need === 0) {
        group.push({ axis: a, piece: pieces[a - 1].push(need) - 1 });
        left /= need;
        need = 1;
      } else return `a dim of ${t.size} does not fall on the value's axes`;
    }
    if (group.length === 0) group.push({ axis: -1, piece: units.push(1) - 1 });
    out.push(group);
  }
  // Size-1 axes left over join the last target dim.
  for (; i < atoms.length; next()) {
    const a = atoms[i];
    if (a === 0 || left !== 1) return 'the target has fewer elements than the value';
    out[out.length - 1].push({ axis: a, piece: pieces[a - 1].push(1) - 1 });
  }
  // A Net axis taken whole keeps its place; split ones become one axis per piece, new unit axes go last.
  const index: number[][] = [];
  let n = 1;
  pieces.forEach((p, k) => (index[k] = (p.length ? p : [shape[k]]).map(() => n++)));
  const unitIndex = units.map(() => n++);
  const split = pieces.some((p) => p.length > 1) || units.length > 0;
  return {
    order: null,
    shape: split ? [...pieces.flatMap((p, k) => (p.length ? p : [shape[k]])), ...units] : null,
    groups: out.map((g) => g.map((p) => (p.axis === 0 ? 0 : p.axis === -1 ? unitIndex[p.piece] : index[p.axis - 1][p.piece]))),
  };
}
