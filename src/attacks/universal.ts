import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import type { Classifier } from '../model/classifier.js';
import type { ImageSet } from '../data/dataset.js';
import { type Norm, projectLp, lpNorm } from '../math/lp.js';
import { Rng, passSeed } from '../math/random.js';
import { predictLabels } from '../model/compute.js';
import { deepfool, type DeepFoolResult } from './deepfool.js';
import { perturb, predictSet, foolingRate } from '../analysis/fooling.js';
import { type Checkpoint, saveCheckpoint, loadCheckpoint } from '../io/checkpoint.js';
import { AbortedError, UsageError } from '../errors.js';

export interface UniversalOptions {
  norm: Norm;
  /** Radius of the Lp ball in pixel units ([0,255] images): 10 for Linf, 2000 for L2 at 224x224x3. */
  xi: number;
  /** Stop once the fooling rate on X reaches 1 - delta. */
  delta: number;
  maxPasses: number;
  overshoot: number;
  candidates: number;
  deepfoolSteps: number;
  /**
   * Norm of the inner DeepFool step: 2 (the paper's code, whatever the ball) or 'match' (the Lp
   * DeepFool of the ball's norm: sign steps for Linf, which fill the Linf ball in fewer updates).
   */
  deepfoolNorm: 2 | 'match';
  /** Images checked per forward pass and given to one batched DeepFool call. */
  batchSize: number;
  seed: number;
  /** Cap on images x candidates per backward pass (memory). */
  maxGradientRows?: number;
}

export const UNIVERSAL_DEFAULTS: Omit<UniversalOptions, 'xi'> & { xi?: number } = {
  norm: 'inf',
  delta: 0.2,
  maxPasses: 10,
  overshoot: 0.02,
  candidates: 10,
  // The reference UAP code caps DeepFool at 10 steps inside Algorithm 1 and drops unconverged steps;
  // images that have not crossed by then rarely do, and they would cost 5x the gradients at 50.
  deepfoolSteps: 10,
  deepfoolNorm: 2,
  batchSize: 16,
  seed: 0,
};

export interface PassRecord {
  pass: number;
  /** Fooling rate on X with v after this pass. */
  foolingRate: number;
  normL2: number;
  normInf: number;
  /** DeepFool calls that converged and were added to v in this pass. */
  updates: number;
  seconds: number;
}

export interface Progress {
  pass: number;
  maxPasses: number;
  /** Images of X processed in this pass. */
  done: number;
  total: number;
  /** Fooling rate on X after the last completed pass (null before the first). */
  foolingRate: number | null;
  /** Share of the images checked so far in this pass that were already fooled. */
  passFooledShare: number;
  normL2: number;
  normInf: number;
}

export interface RunControl {
  onProgress?: (p: Progress) => void;
  onPass?: (r: PassRecord) => void;
  signal?: AbortSignal;
  /** Folder for per-pass checkpoints. */
  checkpointDir?: string;
  /** Continue from the checkpoint in checkpointDir. */
  resume?: boolean;
  /** Start from this perturbation instead of zero (warm start). */
  init?: tf.Tensor3D;
}

export interface UniversalResult {
  v: tf.Tensor3D;
  foolingRate: number;
  passes: number;
  /** True when the fooling rate reached 1 - delta; false when the pass cap stopped the run. */
  converged: boolean;
  stopReason: string;
  history: PassRecord[];
  /** The model's clean labels on X (the reference of the fooling rate). */
  cleanPred: Int32Array;
  seconds: number;
}

export function validateUniversalOptions(o: UniversalOptions): void {
  const bad = (flag: string, what: string) => {
    throw new UsageError(`--${flag}: ${what}`);
  };
  if (o.norm !== 2 && o.norm !== 'inf') bad('norm', `expected 2 or inf, got ${String(o.norm)}`);
  if (!(o.xi > 0) || !Number.isFinite(o.xi)) bad('xi', `expected a positive number, got ${o.xi}`);
  if (!(o.delta >= 0 && o.delta < 1)) bad('delta', `expected a number in [0, 1), got ${o.delta}`);
  if (!Number.isInteger(o.maxPasses) || o.maxPasses < 1) bad('max-passes', `expected an integer >= 1, got ${o.maxPasses}`);
  if (!(o.overshoot >= 0)) bad('overshoot', `expected a number >= 0, got ${o.overshoot}`);
  if (!Number.isInteger(o.candidates) || o.candidates < 2) bad('candidates', `expected an integer >= 2, got ${o.candidates}`);
  if (!Number.isInteger(o.deepfoolSteps) || o.deepfoolSteps < 1) bad('deepfool-steps', `expected an integer >= 1, got ${o.deepfoolSteps}`);
  if (o.deepfoolNorm !== 2 && o.deepfoolNorm !== 'match') bad('deepfool-norm', `expected 2 or match, got ${String(o.deepfoolNorm)}`);
  if (!Number.isInteger(o.batchSize) || o.batchSize < 1) bad('batch-size', `expected an integer >= 1, got ${o.batchSize}`);
  if (!Number.isInteger(o.seed)) bad('seed', `expected an integer, got ${o.seed}`);
}

/** A resumed run continues from its checkpoint, so a warm start alongside it is a contradiction. */
export function refuseResumeWithInit(resume: unknown, init: unknown): void {
  if (resume && init) throw new UsageError('--resume and --init exclude each other: a resumed run continues from its checkpoint');
}

/** What must match for a resumed run to continue the same computation: model, data, backend, settings. */
function fingerprint(model: Classifier, X: ImageSet, o: UniversalOptions): Record<string, unknown> {
  const data = createHash('sha1').update(X.items.map((i) => i.path).join('\n')).digest('hex').slice(0, 16);
  return {
    model: model.name, images: X.size, data, backend: model.runtime?.name ?? tf.getBackend(), norm: o.norm, xi: o.xi, overshoot: o.overshoot,
    candidates: o.candidates, deepfoolSteps: o.deepfoolSteps, deepfoolNorm: o.deepfoolNorm, batchSize: o.batchSize, seed: o.seed,
  };
}

/**
 * Algorithm 1 of Moosavi-Dezfooli et al. (CVPR 2017). Passes over X in a seeded order; per batch,
 * one forward pass finds the images x with k(x+v) = k(x); one batched DeepFool call at x+v gives each
 * its minimal extra perturbation; v is updated and projected onto the Lp ball after EACH image, as in
 * the paper. DeepFool takes its L2 step by default (as the paper's code does; the Linf constraint then
 * comes from the projection). Only converged DeepFool results are added (as the reference code does).
 */
export async function computeUniversal(model: Classifier, X: ImageSet, options: UniversalOptions, ctl: RunControl = {}): Promise<UniversalResult> {
  const o = options;
  validateUniversalOptions(o);
  const [h, w, c] = model.inputShape;
  if (X.shape[0] !== h || X.shape[1] !== w || X.shape[2] !== c)
    throw new UsageError(`images are ${X.shape.join('x')} but model ${model.name} takes ${h}x${w}x${c}`);
  const fp = fingerprint(model, X, o);
  let v: tf.Tensor3D;
  let history: PassRecord[] = [];
  let startPass = 0;
  let elapsedBefore = 0;
  refuseResumeWithInit(ctl.resume, ctl.init);
  if (ctl.resume) {
    if (!ctl.checkpointDir) throw new UsageError('--resume needs the run directory (--out) of the interrupted run');
    const ck = loadCheckpoint<PassRecord>(ctl.checkpointDir, fp);
    v = tf.tensor3d(ck.v, ck.shape);
    history = ck.history;
    startPass = ck.completed;
    elapsedBefore = ck.elapsed;
  } else {
    v = ctl.init ? projectLp(ctl.init, o.norm, o.xi) : tf.zeros([h, w, c]);
  }
  const t0 = performance.now();
  const seconds = () => elapsedBefore + (performance.now() - t0) / 1000;
  const cleanPred = await predictSet(model, X, null, o.batchSize);
  let fr = history.length ? history[history.length - 1].foolingRate : null;
  let stopReason = '';
  let converged = fr !== null && fr >= 1 - o.delta;
  if (converged) stopReason = `fooling rate ${(fr! * 100).toFixed(1)}% >= ${((1 - o.delta) * 100).toFixed(1)}% (target reached before resume)`;

  for (let pass = startPass; pass < o.maxPasses && !converged; pass++) {
    const passStart = performance.now();
    const order = new Rng(passSeed(o.seed, pass)).permutation(X.size);
    let updates = 0;
    let fooledSeen = 0;
    for (let s = 0; s < X.size; s += o.batchSize) {
      if (ctl.signal?.aborted) {
        v.dispose();
        throw new AbortedError(ctl.checkpointDir && history.length ? `stopped; pass ${history.length} is in the checkpoint in ${ctl.checkpointDir}` : 'stopped');
      }
      const idx = order.slice(s, s + o.batchSize);
      const labels = Int32Array.from(idx, (i) => cleanPred[i]);
      const x = X.batch(idx);
      const adv = tf.tidy(() => perturb(x, v));
      let sub: tf.Tensor4D | undefined;
      let df: DeepFoolResult | undefined;
      try {
        const pred = await predictLabels(model, adv);
        const unfooled = idx.map((_, j) => j).filter((j) => pred[j] === labels[j]);
        fooledSeen += idx.length - unfooled.length;
        if (unfooled.length > 0) {
          sub = tf.tidy(() => tf.gather(adv, tf.tensor1d(unfooled, 'int32')) as tf.Tensor4D);
          df = await deepfool(model, sub, {
            norm: o.deepfoolNorm === 'match' ? o.norm : 2, candidates: o.candidates, overshoot: o.overshoot, maxSteps: o.deepfoolSteps,
            labels: Int32Array.from(unfooled, (j) => labels[j]), maxRows: o.maxGradientRows,
          });
          // Every step of this batch was computed at the batch-start v; v is projected after each one.
          for (let u = 0; u < unfooled.length; u++) {
            if (df.status[u] !== 'converged') continue;
            const r = df.r;
            const next = tf.tidy(() => projectLp(tf.add(v, r.slice([u, 0, 0, 0], [1, h, w, c]).reshape([h, w, c])) as tf.Tensor3D, o.norm, o.xi));
            v.dispose();
            v = next;
            updates++;
          }
        }
      } catch (e) {
        v.dispose();
        throw e;
      } finally {
        tf.dispose([x, adv, ...(sub ? [sub] : []), ...(df ? [df.r] : [])]);
      }
      ctl.onProgress?.({
        pass: pass + 1, maxPasses: o.maxPasses, done: Math.min(s + o.batchSize, X.size), total: X.size,
        foolingRate: fr, passFooledShare: fooledSeen / Math.min(s + o.batchSize, X.size),
        normL2: lpNorm(v, 2), normInf: lpNorm(v, 'inf'),
      });
      await new Promise((r) => setImmediate(r)); // let the progress bar and abort signals through
    }
    fr = foolingRate(cleanPred, await predictSet(model, X, v, o.batchSize));
    const rec: PassRecord = {
      pass: pass + 1, foolingRate: fr, normL2: lpNorm(v, 2), normInf: lpNorm(v, 'inf'), updates,
      seconds: (performance.now() - passStart) / 1000,
    };
    history.push(rec);
    if (ctl.checkpointDir)
      saveCheckpoint<PassRecord>(ctl.checkpointDir, { completed: pass + 1, fingerprint: fp, history, v: v.dataSync() as Float32Array, shape: [h, w, c], elapsed: seconds() });
    ctl.onPass?.(rec);
    if (fr >= 1 - o.delta) {
      converged = true;
      stopReason = `fooling rate ${(fr * 100).toFixed(1)}% >= ${((1 - o.delta) * 100).toFixed(1)}% (1 - delta) after ${pass + 1} pass(es)`;
    }
  }
  if (!converged) stopReason = `pass cap reached (${o.maxPasses} passes) at fooling rate ${((fr ?? 0) * 100).toFixed(1)}% < ${((1 - o.delta) * 100).toFixed(1)}%`;
  return { v, foolingRate: fr ?? 0, passes: history.length, converged, stopReason, history, cleanPred, seconds: seconds() };
}

export type { Checkpoint };
