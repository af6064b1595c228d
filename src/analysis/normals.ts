import { UsageError } from '../errors.js';
import * as tf from '../tf.js';
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import type { Classifier } from '../classifier/classifier.js';
import type { ImageSet } from '../data/dataset.js';
import type { ImageSource } from '../data/source.js';
import { deepfool } from '../attacks/deepfool.js';
import { Rng } from '../math/random.js';
import { foolingRate } from '../evaluation/scoring.js';
import { localExecutor, type Executor, type SetPlace } from '../run/executor.js';
import type { TopLevelSpec } from '../report/plots.js';
import { pickRows } from '../math/batch.js';

/**
 * The geometry behind universality (the paper's Sec. 5, Fig. 9): the DeepFool boundary normals
 * r(x)/||r(x)|| of n images span a low-dimensional subspace. Their n x D matrix N is analysed through
 * the n x n Gram matrix N N^T (D = 150,528 makes the SVD of N itself wasteful): its eigenvalues are the
 * squared singular values, its eigenvectors give the right singular vectors v_i = N^T u_i / s_i.
 * Random vectors drawn from the span of the top d of them fool far more than unconstrained random
 * vectors of the same norm.
 */

export interface NormalsResult {
  images: number;
  /** Images whose DeepFool converged (rows of N). */
  normals: number;
  /** Singular values of N, descending. */
  singular: number[];
  /** Singular values of as many random unit vectors in the same dimension, descending. */
  randomSingular: number[];
  /** Fooling rate of random vectors of L2 norm xi in the span of the top d singular vectors, and unconstrained. */
  subspace: { d: number; mean: number; min: number; max: number }[];
  unconstrained: { mean: number; min: number; max: number };
  xi: number;
  draws: number;
}

/** Descending singular values (and the matching left singular vectors) of the rows of `rows` [n, D]. */
function gramSvd(rows: tf.Tensor2D): { singular: number[]; u: number[][] } {
  const gram = tf.tidy(() => tf.matMul(rows, rows, false, true));
  const g = gram.arraySync() as number[][];
  gram.dispose();
  const eig = new EigenvalueDecomposition(new Matrix(g), { assumeSymmetric: true });
  const order = eig.realEigenvalues.map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0]);
  const vecs = eig.eigenvectorMatrix;
  return {
    singular: order.map(([v]) => Math.sqrt(Math.max(v, 0))),
    u: order.map(([, i]) => vecs.getColumn(i)),
  };
}

function unitRows(n: number, size: number, seed: number): tf.Tensor2D {
  const rng = new Rng(seed);
  return tf.tidy(() => {
    const r = tf.tensor2d(
      Float32Array.from({ length: n * size }, () => rng.normal()),
      [n, size],
    );
    return tf.div(r, tf.norm(r, 2, 1, true)) as tf.Tensor2D;
  });
}

export async function normalsAnalysis(
  model: Classifier,
  X: ImageSet,
  V: ImageSource,
  opts: {
    xi: number;
    dims?: number[];
    draws?: number;
    seed?: number;
    batchSize?: number;
    onProgress?: (done: number) => void;
    /** Told when dimensions asked for are beyond the rank of the normals found (they are left out). */
    warn?: (message: string) => void;
    /** Where the random vectors are scored on V (default: here), and where V is for a worker. */
    exec?: Executor;
    place?: SetPlace;
  },
): Promise<NormalsResult> {
  const [h, w, c] = model.inputShape;
  const size = h * w * c;
  const draws = opts.draws ?? 3;
  const seed = opts.seed ?? 0;
  // 1. DeepFool normals r(x)/||r(x)|| of the converged images.
  const parts: tf.Tensor2D[] = [];
  for (const idx of X.batchIndices(opts.batchSize ?? 16)) {
    const df = await deepfool(model, X.images(idx));
    const ok = idx.map((_, j) => j).filter((j) => df.status[j] === 'converged');
    if (ok.length)
      parts.push(
        tf.tidy(() => {
          const r = tf.tensor2d(pickRows(df.r, ok, size), [ok.length, size]);
          return tf.div(r, tf.norm(r, 2, 1, true)) as tf.Tensor2D;
        }),
      );
    opts.onProgress?.(idx[idx.length - 1] + 1);
  }
  if (parts.length === 0)
    throw new UsageError(
      'DeepFool converged on none of the images of X: no normals to analyse (more images, or a model whose decisions DeepFool can cross)',
    );
  const N = tf.concat(parts, 0) as tf.Tensor2D;
  tf.dispose(parts);
  const n = N.shape[0];
  try {
    const { singular, u } = gramSvd(N);
    const R = unitRows(n, size, seed + 7);
    const randomSingular = gramSvd(R).singular;
    R.dispose();
    // 2. Right singular vectors of the top components: v_i = N^T u_i / s_i, as columns of [D, dMax].
    const usable = singular.filter((s) => s > 1e-6 * singular[0]).length;
    // Dimensions asked for by name must exist: dropping them left an empty result with exit 0.
    // Dimensions asked for by name and beyond the normals' rank: said, and refused when none is left
    // (dropping them in silence left an empty result with exit 0).
    const beyond = opts.dims?.filter((d) => d > usable) ?? [];
    const span = `the ${n} DeepFool normals span ${usable} dimensions`;
    if (beyond.length && beyond.length === opts.dims!.length)
      throw new UsageError(`{dims} ${opts.dims!.join(',')}: ${span}, fewer than each`);
    if (beyond.length) opts.warn?.(`{dims} ${opts.dims!.join(',')}: ${span}; ${beyond.join(', ')} left out`);
    const dims = (opts.dims ?? [1, 10, 50, 100, 200]).filter((d) => d <= usable);
    const dMax = Math.max(...dims, 1);
    const basis = tf.tidy(() => {
      const U = tf.tensor2d(u.slice(0, dMax).flat(), [dMax, n]);
      const S = tf.tensor1d(singular.slice(0, dMax));
      return tf.div(tf.matMul(U, N), S.reshape([dMax, 1])) as tf.Tensor2D; // [dMax, D], orthonormal rows
    });
    // Every random vector first (the generator's draws in a fixed order), then all of them scored in ONE pass over V.
    const rng = new Rng(seed + 11);
    const scaled = (vec: tf.Tensor1D): Float32Array => {
      const v = tf.tidy(() => tf.mul(vec, opts.xi / tf.norm(vec).dataSync()[0]));
      const data = v.dataSync() as Float32Array;
      tf.dispose([v, vec]);
      return data;
    };
    const vectors: Float32Array[] = [];
    for (const d of dims) {
      for (let k = 0; k < draws; k++) {
        const z = tf.tensor2d(
          Float32Array.from({ length: d }, () => rng.normal()),
          [1, d],
        );
        vectors.push(scaled(tf.tidy(() => tf.matMul(z, basis.slice([0, 0], [d, size])).reshape([size]) as tf.Tensor1D)));
        z.dispose();
      }
    }
    basis.dispose();
    for (let k = 0; k < draws; k++) vectors.push(scaled(tf.tensor1d(Float32Array.from({ length: size }, () => rng.normal()))));
    const [clean, ...preds] = await (opts.exec ?? localExecutor).labels({ model, set: V, place: opts.place }, vectors);
    const rates = preds.map((p) => foolingRate(clean, p));
    const stats = (r: number[]) => ({ mean: r.reduce((a, b) => a + b, 0) / r.length, min: Math.min(...r), max: Math.max(...r) });
    const subspace: NormalsResult['subspace'] = dims.map((d, i) => ({ d, ...stats(rates.slice(i * draws, (i + 1) * draws)) }));
    const free = rates.slice(dims.length * draws);
    return { images: X.size, normals: n, singular, randomSingular, subspace, unconstrained: stats(free), xi: opts.xi, draws };
  } finally {
    N.dispose();
  }
}

/** Singular values, normalised by the largest, of the normals vs random unit vectors (Fig. 9). */
export function normalsSpec(r: NormalsResult, title: string): TopLevelSpec {
  const rows = (s: number[], kind: string) => s.map((v, i) => ({ index: i + 1, value: v / s[0], kind }));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    data: { values: [...rows(r.singular, 'DeepFool normals'), ...rows(r.randomSingular, 'random unit vectors')] },
    width: 420,
    height: 260,
    mark: { type: 'line' },
    encoding: {
      x: { field: 'index', type: 'quantitative', title: 'singular value index' },
      y: { field: 'value', type: 'quantitative', title: 'singular value / largest' },
      color: { field: 'kind', type: 'nominal', title: null, scale: { range: ['#d62728', '#7f7f7f'] } },
    },
  } as TopLevelSpec;
}
