import { criterionOf, targetedAt, type SuccessFigures } from './criterion.js';
import * as tf from '../tf.js';
import type { Classifier } from '../classifier/classifier.js';
import type { ImageSet } from '../data/dataset.js';
import { projectLp, lpNorm, l2 } from '../math/lp.js';
import { Rng, passSeed } from '../math/random.js';
import { predictSet, foolingRate } from '../evaluation/scoring.js';
import type { Checkpoint } from '../io/checkpoint.js';
import { AbortedError, UsageError } from '../errors.js';
import { pct } from '../math/percent.js';
import { checkOptions, fingerprintOf, type OptionsOf } from './options.js';

/**
 * What every way of crafting a universal perturbation shares: seeded passes over X, the fooling rate
 * (or targeted success) after each, the stopping rule, checkpoints after every pass and an exact
 * resume, a warm start, progress and Ctrl-C. A method (Algorithm 1, SGD) supplies one pass.
 */

/**
 * The pass runner's options (norm, xi, delta, passes, batch, seed: the schema in options.ts) and the
 * criterion: whom the attack pushes where, checked against the model's classes.
 */
export type PassOptions = OptionsOf<'passes'> & {
  /** Targeted: push every image to this class. */
  target?: number;
  /** Class-discriminative (SGD): fool the images of these classes only; the others keep their labels. */
  classes?: number[];
};

/** One pass over X: its number, the rates after it (fooling; the criterion's own success and validation when they apply), the norms of v, the updates made, and its time. */
export interface PassRecord extends SuccessFigures {
  pass: number;
  /** Fooling rate on X with v after this pass. */
  foolingRate: number;
  /** When the run scores validation images after every pass (RunControl.scorePass): their fooling rate. */
  valFoolingRate?: number;
  normL2: number;
  normInf: number;
  /** Updates of v in this pass (Algorithm 1: converged DeepFool steps; SGD: minibatch steps). */
  updates: number;
  seconds: number;
}

/** Progress within a pass (images done of the total, the rate so far, the norms of v), given to `onProgress` as an attack runs. */
export interface Progress {
  pass: number;
  maxPasses: number;
  /** Images of X processed in this pass. */
  done: number;
  total: number;
  /** Fooling rate on X after the last completed pass (null before the first). */
  foolingRate: number | null;
  /** Share of the images checked so far in this pass that were already fooled (targeted: at the target). */
  passFooledShare: number;
  normL2: number;
  normInf: number;
}

/**
 * Where a run's checkpoint goes after every pass, and comes back from on resume: a folder on disk
 * (`folderCheckpoints(dir)`, src/io/checkpoint.ts) or anything else that keeps one (the host's to give:
 * this module runs in a browser too).
 */
export interface CheckpointStore {
  /** Where it is, in words (a folder): named in messages. */
  readonly where: string;
  save(ck: Checkpoint<PassRecord>): void;
  /** The stored checkpoint; refused when it was made with another fingerprint (not the same run). */
  load(fingerprint: Record<string, unknown>): Checkpoint<PassRecord>;
}

/** How a run is driven from outside: progress and per-pass callbacks, an abort signal, the checkpoint store saved after every pass (and `resume` from it), a starting v. */
export interface RunControl {
  onProgress?: (p: Progress) => void;
  /** After each pass (and its checkpoint), with v; awaited, and not counted in the pass's seconds. */
  onPass?: (r: PassRecord, v: tf.Tensor3D) => void | Promise<void>;
  signal?: AbortSignal;
  /** Per-pass checkpoints. */
  checkpoints?: CheckpointStore;
  /** Continue from the checkpoint in `checkpoints`. */
  resume?: boolean;
  /** Start from this perturbation instead of zero (warm start). */
  init?: tf.Tensor3D;
  /** Awaited after every batch: a pause (the studio's) holds the run here until it resolves. */
  gate?: () => Promise<void>;
  /** Called once when a run continues from its checkpoint, with the passes already done. */
  onResume?: (completed: number) => void;
  /**
   * A wall-clock time (Date.now()) after which no new pass starts: the run ends after the pass in which
   * its time ran out, with that pass's v (a control, not a setting: it does not enter the fingerprint).
   */
  deadline?: number;
  /** Scores v on held-out images after every pass (kept in the pass's record; not counted in its seconds). */
  scorePass?: (v: tf.Tensor3D) => Promise<number>;
}

/** What a universal attack returns: the perturbation v [H, W, C] in pixel units, the fooling (or target success) rate on X, the per-pass history, why it stopped, and X's clean labels. */
export interface UniversalResult {
  v: tf.Tensor3D;
  method: string;
  foolingRate: number;
  targetSuccess?: number;
  passes: number;
  /** True when the rate reached 1 - delta; false when the pass cap stopped the run. */
  converged: boolean;
  stopReason: string;
  history: PassRecord[];
  /** The model's clean labels on X (the reference of the fooling rate). */
  cleanPred: Int32Array;
  seconds: number;
}

/** What one pass of a method sees; `v` is replaced (and the old one disposed) by the method. */
export interface PassContext {
  v: tf.Tensor3D;
  readonly pass: number;
  /** The images of X in this pass's seeded order. */
  readonly order: number[];
  readonly cleanPred: Int32Array;
  /** Reports progress after a batch; throws AbortedError when the run is being stopped. */
  report(done: number, fooledSeen: number): Promise<void>;
}

export interface PassMethod {
  name: string;
  /** Settings that shape the computation: a resume with other values is refused. */
  settings: Record<string, unknown>;
  /** One pass over ctx.order; returns the number of updates of v. */
  pass(ctx: PassContext): Promise<number>;
  /** State to checkpoint besides v, and to restore on resume. */
  state?(): Record<string, Float32Array>;
  restore?(s: Record<string, Float32Array>): void;
  dispose?(): void;
}

/**
 * Walks one pass's order in minibatches: `step` gets the minibatch's positions in X and their clean
 * labels (it reads the images itself, here or on workers), returns how many of them were already
 * fooled, and the pass reports progress after each batch.
 */
export async function forEachMinibatchIndex(
  ctx: PassContext,
  X: { size: number },
  batchSize: number,
  step: (b: { idx: number[]; labels: Int32Array }) => Promise<number>,
): Promise<void> {
  let fooledSeen = 0;
  for (let s = 0; s < X.size; s += batchSize) {
    const idx = ctx.order.slice(s, s + batchSize);
    fooledSeen += await step({ idx, labels: Int32Array.from(idx, (i) => ctx.cleanPred[i]) });
    await ctx.report(Math.min(s + batchSize, X.size), fooledSeen);
  }
}

/** A resumed run continues from its checkpoint, so a warm start alongside it is a contradiction. */
export function refuseResumeWithInit(resume: unknown, init: unknown): void {
  if (resume && init) throw new UsageError('{resume} and {init} exclude each other: a resumed run continues from its checkpoint');
}

/** Share of images not of class `target` originally that `adv` classifies as `target`. */
export function targetSuccessRate(clean: Int32Array, adv: Int32Array, target: number): number {
  return targetedAt(target).successRate(clean, adv);
}

export function validatePassOptions(o: PassOptions, numClasses: number): void {
  checkOptions(o, ['passes']);
  const bad = (flag: string, what: string) => {
    throw new UsageError(`{${flag}}: ${what}`);
  };
  if (o.target !== undefined && !(Number.isInteger(o.target) && o.target >= 0 && o.target < numClasses))
    bad('target', `expected a class index in 0..${numClasses - 1} or a label name, got ${o.target}`);
  if (o.classes !== undefined) {
    if (!o.classes.length || o.classes.some((c) => !(Number.isInteger(c) && c >= 0 && c < numClasses)))
      bad('classes', `expected class indices in 0..${numClasses - 1} or label names, got ${o.classes.join(',')}`);
    if (o.target !== undefined) bad('classes', 'a class-discriminative attack is untargeted: give {classes} or {target}, not both');
  }
}

/** What must match for a resumed run to continue the same computation: model, data, backend, settings. */
async function fingerprint(model: Classifier, X: ImageSet, o: PassOptions, method: PassMethod): Promise<Record<string, unknown>> {
  // Web Crypto, in Node and in browsers alike; the same SHA-1 as checkpoints made before it.
  const digest = await globalThis.crypto.subtle.digest('SHA-1', new TextEncoder().encode(X.items.map((i) => i.path).join('\n')));
  const data = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0'))
    .join('')
    .slice(0, 16);
  return {
    model: model.name,
    images: X.size,
    data,
    backend: model.runtime.name,
    method: method.name,
    ...fingerprintOf(o, ['passes']),
    target: o.target ?? null,
    ...(o.classes ? { classes: o.classes.join(',') } : {}),
    ...method.settings,
  };
}

export async function runPasses(
  model: Classifier,
  X: ImageSet,
  o: PassOptions,
  method: PassMethod,
  ctl: RunControl = {},
): Promise<UniversalResult> {
  validatePassOptions(o, model.numClasses);
  const [h, w, c] = model.inputShape;
  if (X.shape[0] !== h || X.shape[1] !== w || X.shape[2] !== c)
    throw new UsageError(`images are ${X.shape.join('x')} but model ${model.name} takes ${h}x${w}x${c}`);
  // Only runs with checkpoints need it.
  const fp = ctl.checkpoints ? await fingerprint(model, X, o, method) : {};
  refuseResumeWithInit(ctl.resume, ctl.init);
  const start = startingPoint(model, o, method, ctl, fp);
  const ctx = { v: start.v };
  const history = start.history;
  const t0 = performance.now();
  const seconds = () => start.elapsed + (performance.now() - t0) / 1000;
  const goal = 1 - o.delta;
  const criterion = criterionOf(o.target, o.classes);
  const rateOf = (r: PassRecord) => criterion.rateIn(r);
  const what = criterion.rateName;
  try {
    const cleanPred = await predictSet(model, X, null, o.batchSize);
    const last = history[history.length - 1];
    let converged = last !== undefined && rateOf(last) >= goal;
    let stopReason = converged ? `${what} ${pct(rateOf(last))} >= ${pct(goal)} (target reached before resume)` : '';
    let outOfTime = false;
    for (let pass = start.pass; pass < o.maxPasses && !converged; pass++) {
      if (pass > start.pass && ctl.deadline !== undefined && Date.now() >= ctl.deadline) {
        outOfTime = true;
        break;
      }
      const passStart = performance.now();
      const lastRate = history.length ? history[history.length - 1].foolingRate : null;
      const report = progressReporter(ctx, ctl, o, X.size, pass, lastRate, () => history.length);
      const order = new Rng(passSeed(o.seed, pass)).permutation(X.size);
      const updates = await method.pass({
        get v() {
          return ctx.v;
        },
        set v(t: tf.Tensor3D) {
          ctx.v = t;
        },
        pass,
        order,
        cleanPred,
        report,
      });
      const rec = await passRecord(model, X, o, ctx.v, cleanPred, { pass, updates, passStart }, ctl.scorePass);
      history.push(rec);
      ctl.checkpoints?.save({
        completed: pass + 1,
        fingerprint: fp,
        history,
        v: ctx.v.dataSync() as Float32Array,
        shape: [h, w, c],
        elapsed: seconds(),
        extra: method.state?.(),
      });
      await ctl.onPass?.(rec, ctx.v);
      if (rateOf(rec) >= goal) {
        converged = true;
        stopReason = `${what} ${pct(rateOf(rec))} >= ${pct(goal)} (1 - delta) after ${pass + 1} pass(es)`;
      }
    }
    const fin = history[history.length - 1];
    if (!converged)
      stopReason = outOfTime
        ? `time budget reached after ${history.length} pass(es) at ${what} ${pct(fin ? rateOf(fin) : 0)}`
        : `pass cap reached (${o.maxPasses} passes) at ${what} ${pct(fin ? rateOf(fin) : 0)} < ${pct(goal)}`;
    return {
      v: ctx.v,
      method: method.name,
      foolingRate: fin?.foolingRate ?? 0,
      targetSuccess: fin?.targetSuccess,
      passes: history.length,
      converged,
      stopReason,
      history,
      cleanPred,
      seconds: seconds(),
    };
  } catch (e) {
    ctx.v.dispose();
    throw e;
  } finally {
    method.dispose?.();
  }
}

/** What a finished pass records: X's fooling rate at v (and the criterion's figures), v's norms, its time, the validation rate when asked. */
async function passRecord(
  model: Classifier,
  X: ImageSet,
  o: PassOptions,
  v: tf.Tensor3D,
  cleanPred: Int32Array,
  at: { pass: number; updates: number; passStart: number },
  scorePass?: RunControl['scorePass'],
): Promise<PassRecord> {
  const adv = await predictSet(model, X, v, o.batchSize);
  const rec: PassRecord = {
    pass: at.pass + 1,
    foolingRate: foolingRate(cleanPred, adv),
    normL2: lpNorm(v, 2),
    normInf: lpNorm(v, 'inf'),
    updates: at.updates,
    seconds: (performance.now() - at.passStart) / 1000,
    ...criterionOf(o.target, o.classes).figures(cleanPred, adv),
  };
  if (scorePass) rec.valFoolingRate = await scorePass(v);
  return rec;
}

/**
 * Where a run starts: the checkpoint of the interrupted run (refused unless it is this run's: same
 * fingerprint, shape, inside the ball), or the warm start projected onto the ball, or zero.
 */
function startingPoint(
  model: Classifier,
  o: PassOptions,
  method: PassMethod,
  ctl: RunControl,
  fp: Record<string, unknown>,
): { v: tf.Tensor3D; history: PassRecord[]; pass: number; elapsed: number } {
  const [h, w, c] = model.inputShape;
  if (!ctl.resume) return { v: ctl.init ? projectLp(ctl.init, o.norm, o.xi) : tf.zeros([h, w, c]), history: [], pass: 0, elapsed: 0 };
  if (!ctl.checkpoints) throw new UsageError('{resume} needs the run directory ({out}) of the interrupted run');
  const ck = ctl.checkpoints.load(fp);
  // What a resumed run publishes must be what this run could have made: its shape, inside its ball.
  if (ck.shape.join() !== [h, w, c].join())
    throw new UsageError(
      `{resume}: the checkpoint in ${ctl.checkpoints.where} holds a ${ck.shape.join('x')} perturbation; model ${model.name} takes ${h}x${w}x${c}`,
    );
  const n = o.norm === 2 ? l2(ck.v) : ck.v.reduce((m, t) => Math.max(m, Math.abs(t)), 0);
  if (n > o.xi * (1 + 1e-5))
    throw new UsageError(
      `{resume}: the checkpoint's perturbation has ||v||_${o.norm} = ${n.toPrecision(4)}, outside the ball of radius ${o.xi}; it was not made by this run`,
    );
  ctl.onResume?.(ck.completed);
  method.restore?.(ck.extra ?? {});
  return { v: tf.tensor3d(ck.v, ck.shape), history: ck.history, pass: ck.completed, elapsed: ck.elapsed };
}

/**
 * A pass's `report`: holds at a pause, stops on abort (saying where the last pass is kept), and tells
 * the caller the pass's progress with v's norms so far.
 */
function progressReporter(
  ctx: { v: tf.Tensor3D },
  ctl: RunControl,
  o: PassOptions,
  total: number,
  pass: number,
  lastRate: number | null,
  passesKept: () => number,
): PassContext['report'] {
  return async (done, fooledSeen) => {
    await ctl.gate?.(); // a pause holds here, before this batch is reported
    if (ctl.signal?.aborted)
      throw new AbortedError(
        ctl.checkpoints && passesKept() ? `stopped; pass ${passesKept()} is in the checkpoint in ${ctl.checkpoints.where}` : 'stopped',
      );
    ctl.onProgress?.({
      pass: pass + 1,
      maxPasses: o.maxPasses,
      done,
      total,
      foolingRate: lastRate,
      passFooledShare: fooledSeen / Math.max(done, 1),
      normL2: lpNorm(ctx.v, 2),
      normInf: lpNorm(ctx.v, 'inf'),
    });
    await new Promise((r) => setTimeout(r, 0)); // let the progress bar and abort signals through
  };
}
