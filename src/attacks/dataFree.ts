import type { Classifier, FeatureModel } from '../classifier/classifier.js';
import type { ImageSet } from '../data/imageSet.js';
import { forwardLogits, vjp } from '../classifier/compute.js';
import { batchOf, shiftedBy, type Batch } from '../math/batch.js';
import { Rng, passSeed } from '../math/random.js';
import { UsageError } from '../errors.js';
import { Ascent, batchGradient } from './ascent.js';
import { checkOptions, defaultsOf, fingerprintOf, type OptionsOf } from './options.js';
import { runPasses, type PassMethod, type PassOptions, type RunControl, type UniversalResult } from './passes.js';

/**
 * GD-UAP (Mopuri, Ganeshan, Babu, TPAMI 2018; its data-free core is Fast Feature Fool, WACV 2017):
 * v maximises the product of the activation norms of the network's convolutional layers, i.e. it
 * ascends sum_l log ||f_l(x + v)||_2, projected onto the Lp ball. What x is, is the prior:
 * - 'none': no data at all; x is the image the network sees as zero input (its preprocessing's mean),
 *   so the network sees v alone, as in Fast Feature Fool;
 * - 'range': x is random noise spread over the pixel range [0, 255] (GD-UAP's range prior), fresh each step;
 * - 'data': x are images of X (GD-UAP's data prior).
 * With `layers` set to one layer and the data prior, this is layer maximisation (a feature-layer loss).
 * X is only scored (the pass runner's fooling rate and stopping rule) unless the prior is 'data'.
 */

export type DataFreePrior = 'none' | 'range' | 'data';

/** GD-UAP options: the pass options plus the prior, the layers, the optimiser, the learning rate and the steps per pass (the schema in options.ts). */
export type DataFreeOptions = PassOptions & OptionsOf<'gduap'>;

/** GD-UAP's defaults (the schema's) for everything but the radius. */
export const DATA_FREE_DEFAULTS = defaultsOf('gduap') as Omit<DataFreeOptions, 'xi'>;

export function validateDataFreeOptions(o: DataFreeOptions): void {
  checkOptions(o, ['gduap']);
  const bad = (field: string, what: string) => {
    throw new UsageError(`{${field}}: ${what}`);
  };
  if (o.classes !== undefined) bad('classes', 'GD-UAP maximises activations, not a class (the sgd method takes {classes})');
  if (o.target !== undefined)
    bad('target', 'GD-UAP is untargeted: it maximises activations, not a class (the sgd method takes a {target})');
}

/**
 * The cotangent of sum over images and layers of log ||f_l||_2, divided by the number of images:
 * f_l / ||f_l||^2 on each layer's values (zero where a layer is all zero). Returns it and the objective.
 */
export function logNormCotangent(values: Float32Array, sizes: number[], n: number): { dy: Float32Array; objective: number } {
  const total = sizes.reduce((a, b) => a + b, 0);
  const dy = new Float32Array(values.length);
  let objective = 0;
  for (let i = 0; i < n; i++) {
    let at = i * total;
    for (const size of sizes) {
      let sq = 0;
      for (let t = at; t < at + size; t++) sq += values[t] * values[t];
      if (sq > 0) {
        objective += 0.5 * Math.log(sq);
        for (let t = at; t < at + size; t++) dy[t] = values[t] / sq / n;
      }
      at += size;
    }
  }
  return { dy, objective: objective / n };
}

/** The pixel image a network with these preprocessing settings sees as all-zero input, clipped to [0, 255]. */
export function neutralImage(model: Classifier): Float32Array {
  const [h, w, c] = model.inputShape;
  const { scale = 1, offset = 0, mean, std } = model.preprocess ?? {};
  // ((x - mean) / std) * scale + offset = 0  <=>  x = mean - offset * std / scale
  const px = Array.from({ length: c }, (_, k) => Math.min(255, Math.max(0, (mean?.[k] ?? 0) - (offset * (std?.[k] ?? 1)) / scale)));
  return Float32Array.from({ length: h * w * c }, (_, t) => px[t % c]);
}

/** GD-UAP / Fast Feature Fool: v maximises the log-norms of inner layers' activations (Adam, projected), with no data ('none'), uniform noise ('range') or images of X ('data') as the prior; one layer with the data prior is layer maximisation. */
export async function computeDataFreeUniversal(
  model: Classifier,
  X: ImageSet,
  options: DataFreeOptions,
  ctl: RunControl = {},
): Promise<UniversalResult> {
  const o = options;
  validateDataFreeOptions(o);
  if (!model.features)
    throw new UsageError(
      `{method} gduap: model ${model.name} is run as a whole (a TF.js GraphModel, or a bare logits function); its inner layers cannot be read (convert it as a LayersModel, TFLite or ONNX file)`,
    );
  const [h, w, c] = model.inputShape;
  const size = h * w * c;
  const lr0 = o.lr ?? o.xi / 10;
  const ascent = new Ascent([h, w, c], o.optimizer);
  const features: FeatureModel = await model.features(o.layers);
  const sizes = features.layers.map((l) => l.size);
  const neutral = neutralImage(model);
  const method: PassMethod = {
    name: 'gduap',
    settings: {
      ...fingerprintOf(o, ['gduap']),
      layers: features.layers.map((l) => l.name).join(','),
    },
    async pass(ctx) {
      const lr = lr0 * o.lrDecay ** ctx.pass;
      const rng = new Rng(passSeed(o.seed, ctx.pass) ^ 0x5eed);
      for (let step = 0; step < o.stepsPerPass; step++) {
        const base = priorBatch(step, ctx.order);
        const n = base.n;
        const { raw, adv } = shiftedBy(base, ctx.v.dataSync() as Float32Array);
        const { dy } = logNormCotangent(await forwardLogits(features, adv), sizes, n);
        const grad = batchGradient((await vjp(features, adv, dy)).dx, raw, size);
        const prev = ctx.v;
        ctx.v = ascent.step(prev, grad, o.norm, lr, o.xi);
        prev.dispose();
        await ctx.report(Math.round(((step + 1) / o.stepsPerPass) * X.size), 0);
      }
      return o.stepsPerPass;

      function priorBatch(step: number, order: number[]): Batch {
        if (o.prior === 'none') return batchOf(neutral, model.inputShape, 1);
        if (o.prior === 'range')
          return batchOf(
            Float32Array.from({ length: o.batchSize * size }, () => rng.next() * 255),
            model.inputShape,
          );
        const at = (step * o.batchSize) % Math.max(X.size, 1);
        return X.images(order.slice(at, at + o.batchSize));
      }
    },
    state: () => ascent.state(),
    restore: (st) => ascent.restore(st),
  };
  try {
    return await runPasses(model, X, o, method, ctl);
  } finally {
    features.dispose();
  }
}
