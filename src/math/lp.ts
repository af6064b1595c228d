import * as tf from '../tf.js';
import type { Norm } from './radius.js';

export type { Norm };

export function parseNorm(s: string | number): Norm | undefined {
  const t = String(s).toLowerCase();
  if (t === '2' || t === 'l2') return 2;
  if (t === 'inf' || t === 'linf' || t === 'infinity') return 'inf';
  return undefined;
}

/**
 * A library caller's norm and radius, checked where they enter (`fn` names the function): an unknown
 * norm fell through to L2, and a negative or NaN radius gave perturbations of no meaning.
 */
export function checkBall(fn: string, p: unknown, xi: unknown): void {
  if (p !== 2 && p !== 'inf') throw new RangeError(`${fn}: norm ${String(p)}: expected 2 or 'inf'`);
  if (typeof xi !== 'number' || !Number.isFinite(xi) || xi < 0)
    throw new RangeError(`${fn}: radius ${String(xi)}: expected a finite number >= 0`);
}

/** ||v||_p of a whole tensor, as a number. */
export function lpNorm(v: tf.Tensor, p: Norm): number {
  return tf.tidy(() => (p === 2 ? tf.norm(v) : tf.max(tf.abs(v))).dataSync()[0]);
}

/** Per-row ||.||_p of a batch [N, ...] -> [N]. */
export function batchNorm(v: tf.Tensor, p: Norm): tf.Tensor1D {
  return tf.tidy(() => {
    const flat = v.reshape([v.shape[0], -1]);
    return (p === 2 ? tf.sqrt(tf.sum(tf.square(flat), 1)) : tf.max(tf.abs(flat), 1)) as tf.Tensor1D;
  });
}

/**
 * Projection onto the Lp ball of radius xi (the paper's P_{p,xi}): L2 rescales when outside,
 * Linf clips every coordinate. Both are the exact Euclidean projections onto their balls.
 */
export function projectLp<T extends tf.Tensor>(v: T, p: Norm, xi: number): T {
  checkBall('projectLp', p, xi);
  return tf.tidy(() => {
    if (p === 'inf') return tf.clipByValue(v, -xi, xi) as T;
    const n = tf.norm(v);
    const factor = tf.minimum(1, tf.div(xi, tf.maximum(n, 1e-12)));
    return tf.mul(v, factor) as T;
  });
}

/** projectLp on a plain array, in place: the same projection without a tensor round trip. */
export function projectInPlace(v: Float32Array, p: Norm, xi: number): Float32Array {
  if (p === 'inf') {
    for (let t = 0; t < v.length; t++) v[t] = v[t] > xi ? xi : v[t] < -xi ? -xi : v[t];
    return v;
  }
  const n = l2(v);
  if (n > xi) for (let t = 0; t < v.length; t++) v[t] *= xi / n;
  return v;
}

/** ||v||_2 of a plain array, in double precision. */
export function l2(v: ArrayLike<number>): number {
  let s = 0;
  for (let t = 0; t < v.length; t++) s += v[t] * v[t];
  return Math.sqrt(s);
}

/** The L2 radius of the ball: xi for L2; for Linf, the length of its corners, xi * sqrt(d). */
export function ballL2Radius(p: Norm, xi: number, d: number): number {
  return p === 2 ? xi : xi * Math.sqrt(d);
}

export { defaultXi } from './radius.js';
