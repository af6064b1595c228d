/// <reference lib="webworker" />
/**
 * The studio's worker: every computation of the page runs here, with the library's own code: the same
 * model import, attacks, fooling rate and fooling graph as the CLI. The page only draws. What only a
 * browser does (the TF.js backend, decoding images, reading model files) is its host's (studio/host/).
 */
import * as tf from '../src/tf.js';
import type { Classifier } from '../src/classifier/classifier.js';
import { netClassifier } from '../src/import/adapters.js';
import { ImageSet } from '../src/data/imageSet.js';
import { methodOf, METHODS, METHOD_NAMES } from '../src/attacks/methods.js';
import type { PassRecord, RunControl } from '../src/attacks/passes.js';
import { concatLabels, predictMany, predictSet, foolingRate, scorePredictions } from '../src/evaluation/scoring.js';
import { randomPerturbation } from '../src/math/noise.js';
import { foolingGraph, graphToDot, dotToSvg } from '../src/analysis/graph.js';
import { runMetrics } from '../src/evaluation/metrics.js';
import { lpNorm } from '../src/math/lp.js';
import { rateLines, vegaLiteToSvg } from '../src/report/plots.js';
import { arrayFromBytes, fitPerturbation } from '../src/perturbation/format.js';
import { AbortedError, withOptionNames } from '../src/errors.js';
import type { AttackSettings, BrowserCard, DroppedModel, FromWorker, HeldOutRates, ToWorker, TopLabel } from './protocol.js';
import { GRAPH_MIN_FOOLED } from './protocol.js';
import { formControl } from '../src/attacks/options.js';
import { forwardLogits } from '../src/classifier/compute.js';
import { batchOfTensor } from '../src/engine/tfjs/batchTensor.js';
import { chooseBrowserBackend } from './host/backend.js';
import { readImage } from './host/images.js';
import { netFromModelFiles } from './host/modelFiles.js';

const post = (m: FromWorker, transfer: Transferable[] = []) => (self as unknown as DedicatedWorkerGlobalScope).postMessage(m, transfer);

/** Images shown in the page's grid. */
const SHOWN = 12;

let backend: string | undefined;
let model: Classifier | undefined;
let X: ImageSet | undefined;
let cleanPred: Int32Array | undefined;
/** Held-out images: never seen while v is crafted; the grid, the slider and the plain-language rate use them. */
let H: ImageSet | undefined;
let cleanH: Int32Array | undefined;
/** The perturbation after the last completed pass (kept when a run is stopped). */
let current: tf.Tensor3D | undefined;
let abort: AbortController | undefined;
/** Indices (into H) of the held-out images the page shows. */
let shownIndex: number[] | undefined;
let pause: { promise: Promise<void>; release: () => void } | undefined;

/** A load message's model: its card, and the files the user dropped (none when the studio serves the model). */
function cardAndFiles(m: BrowserCard | DroppedModel): { card: BrowserCard; dropped?: File[] } {
  return 'files' in m ? { card: m.card, dropped: m.files } : { card: m };
}

async function load(msg: Extract<ToWorker, { type: 'load' }>): Promise<void> {
  backend ??= await chooseBrowserBackend(msg.backend, (message) => post({ type: 'status', message }));
  model?.dispose();
  model = undefined;
  X = undefined;
  H = undefined;
  current?.dispose();
  current = undefined;
  post({ type: 'status', message: `loading the model on ${backend}...` });
  const { card, dropped } = cardAndFiles(msg.model);
  const net = await netFromModelFiles(card, dropped);
  model = await netClassifier(card, net, card.labels);
  const shape = model.inputShape;
  const per = shape[0] * shape[1] * shape[2];
  const pixels = new Uint8Array(msg.images.length * per);
  let done = 0;
  await Promise.all(
    msg.images.map(async (img, i) => {
      pixels.set(await readImage(img, shape), i * per);
      if (++done % 16 === 0) post({ type: 'status', message: `decoding images: ${done}/${msg.images.length}` });
    }),
  );
  const all = new ImageSet(
    shape,
    pixels,
    msg.images.map((im, i) => ({ path: im.url ?? im.file?.name ?? `image ${i}`, label: im.label })),
  );
  // Half the images craft v, the other half (seeded) are held out: universality is v fooling images it never saw.
  if (all.size < 2) throw new Error('the studio needs at least 2 images (half craft v, half are held out)');
  ({ craft: X, held: H } = all.split(Math.floor(all.size / 2), 0));
  post({ type: 'status', message: 'classifying the clean images...' });
  cleanPred = await predictSet(model, X, null);
  cleanH = await predictSet(model, H, null);
  // The grid shows held-out images spread over the set (folders are sorted by class).
  const step = Math.max(1, Math.floor(H.size / SHOWN));
  const shown = Array.from({ length: Math.min(SHOWN, H.size) }, (_, k) => k * step);
  shownIndex = shown;
  post({
    type: 'ready',
    backend,
    model: { name: model.name, inputShape: shape, numClasses: model.numClasses, labels: model.labels },
    images: { craft: X.size, heldOut: H.size },
    pixels: await H.pick(shown),
    shown,
    cleanPred: cleanH,
    labels: H.labels,
    methods: METHOD_NAMES.map((name) => ({ name, title: METHODS[name].title })),
    controls: { xi: formControl('xi'), maxPasses: formControl('maxPasses'), seed: formControl('seed'), norm: formControl('norm') },
  });
}

const names = () => (i: number) => (model?.labels?.[i] ?? `#${i}`).split(',')[0];

/** Fooling rates on the held-out images of v and of random noise of v's two norms, in one pass over them; and their labels with v. */
async function heldOutRates(v: tf.Tensor3D): Promise<{ rates: HeldOutRates; adv: Int32Array }> {
  const noise = [
    randomPerturbation(model!.inputShape, 'inf', lpNorm(v, 'inf'), 1000),
    randomPerturbation(model!.inputShape, 2, lpNorm(v, 2), 1000),
  ];
  try {
    const [adv, inf, l2] = await predictMany(model!, H!, [v, ...noise]);
    return {
      rates: { foolingRate: foolingRate(cleanH!, adv), noiseLinf: foolingRate(cleanH!, inf), noiseL2: foolingRate(cleanH!, l2) },
      adv,
    };
  } finally {
    tf.dispose(noise);
  }
}

/** The run's curve so far: per pass, crafting and held-out fooling rates and noise of v's size (dashed). */
let curve: { x: number; rate: number; what: string; dashed?: boolean }[] = [];

/** The curve as SVG, drawn here so that Vega's layout and rendering never hold the page's main thread. */
async function curveSvg(rec: PassRecord, held: HeldOutRates): Promise<string> {
  if (rec.pass === 0) return '';
  curve.push(
    { x: rec.pass, rate: rec.foolingRate, what: 'crafting images' },
    { x: rec.pass, rate: held.foolingRate, what: 'held-out images' },
    { x: rec.pass, rate: held.noiseLinf, what: 'noise, same L∞ (held-out)', dashed: true },
    { x: rec.pass, rate: held.noiseL2, what: 'noise, same L2 (held-out)', dashed: true },
  );
  return vegaLiteToSvg(rateLines(curve, 'pass', { width: 300, height: 150 }, 'images fooled'));
}

/** What the page shows after each pass: v, its rates on held-out images beside noise, their new labels, the fooling graph, the curve. */
async function report(v: tf.Tensor3D, rec: Parameters<NonNullable<RunControl['onPass']>>[0]): Promise<void> {
  const { rates, adv: advH } = await heldOutRates(v);
  // The fooling graph of all the images (crafting and held-out): more fooled images, more structure.
  const adv = concatLabels([await predictSet(model!, X!, v), advH]);
  const g = foolingGraph(concatLabels([cleanPred!, cleanH!]), adv, names());
  let svg = '';
  try {
    if (g.fooled >= GRAPH_MIN_FOOLED) svg = await dotToSvg(graphToDot(g, names()));
  } catch (e) {
    post({ type: 'status', message: `fooling graph: ${(e as Error).message}` });
  }
  const data = (await v.data()) as Float32Array;
  post({
    type: 'pass',
    rec,
    heldOut: rates,
    v: data.slice(),
    advPred: advH,
    graph: { svg, fooled: g.fooled },
    curveSvg: await curveSvg(rec, rates),
  });
}

/** metrics.json in the CLI's format (uap compute), for the download. */
async function metrics(
  s: AttackSettings,
  run: { targetSuccess?: number } & Record<string, unknown>,
  v: tf.Tensor3D,
): Promise<Record<string, unknown>> {
  const onX = scorePredictions(cleanPred!, await predictSet(model!, X!, v), X!.labels);
  const onVal = scorePredictions(cleanH!, await predictSet(model!, H!, v), H!.labels);
  return {
    ...runMetrics(model!, v, s, run, onX, { onVal }),
    studio: { model: model!.name, backend, images: X!.size, heldOutImages: H!.size },
  };
}

async function start(s: AttackSettings): Promise<void> {
  if (!model || !X) throw new Error('load a model and images first');
  abort = new AbortController();
  const base = {
    norm: s.norm,
    xi: s.xi,
    maxPasses: s.maxPasses,
    delta: s.delta,
    seed: s.seed,
    ...(s.target !== undefined ? { target: s.target } : {}),
  };
  const history: PassRecord[] = [];
  curve = [];
  const started = performance.now();
  const ctl: RunControl = {
    signal: abort.signal,
    gate: () => {
      if (!pause) return Promise.resolve();
      post({ type: 'held' }); // after the last batch's progress: the page knows the run is still
      return pause.promise;
    },
    onProgress: (p) => post({ type: 'progress', p }),
    onPass: async (rec, v) => {
      current?.dispose();
      current = tf.keep(v.clone());
      history.push(rec);
      await report(v, rec);
    },
  };
  try {
    const method = methodOf(s.method);
    const res = await method.craft(model, X, method.options(base), ctl);
    current?.dispose();
    current = res.v;
    const { v: _v, cleanPred: _c, ...run } = res;
    post({ type: 'done', metrics: await metrics(s, run, res.v), v: ((await res.v.data()) as Float32Array).slice() });
  } catch (e) {
    if (!(e instanceof AbortedError)) throw e;
    if (!current || !history.length) return post({ type: 'stopped', message: 'stopped before the first pass ended' });
    // The run as it stood after its last full pass, in the same metrics format.
    const last = history[history.length - 1];
    const run = {
      method: s.method,
      foolingRate: last.foolingRate,
      targetSuccess: last.targetSuccess,
      passes: history.length,
      converged: false,
      stopReason: `stopped by the user after pass ${history.length}`,
      history,
      seconds: (performance.now() - started) / 1000,
    };
    post({ type: 'stopped', message: 'stopped: the perturbation of the last full pass is kept', metrics: await metrics(s, run, current) });
  } finally {
    abort = undefined;
    pause?.release();
    pause = undefined;
  }
}

function stopRun(): void {
  abort?.abort();
  pause?.release();
  pause = undefined;
}

/** Fooling rate of the current v scaled by `factor` (the page's slider). */
async function scale(factor: number): Promise<void> {
  if (!current || !model || !H) return;
  const v = tf.tidy(() => tf.mul(current!, factor) as tf.Tensor3D);
  try {
    const adv = await predictSet(model, H, v);
    post({
      type: 'scaled',
      factor,
      foolingRate: foolingRate(cleanH!, adv),
      normL2: lpNorm(v, 2),
      normInf: lpNorm(v, 'inf'),
      advPred: adv,
      v: ((await v.data()) as Float32Array).slice(),
    });
  } finally {
    v.dispose();
  }
}

/** The `k` most probable classes of one row of logits. */
function topK(logits: Float32Array, k: number): TopLabel[] {
  const max = Math.max(...logits);
  const e = Array.from(logits, (z) => Math.exp(z - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e
    .map((x, label) => ({ label, p: x / sum }))
    .sort((a, b) => b.p - a.p)
    .slice(0, k);
}

/** One shown held-out image, clean and with factor x v: top-5 labels of both (the page's large view). */
async function inspect(k: number, factor: number): Promise<void> {
  if (!model || !H || !shownIndex) return;
  const [h, w, c] = model.inputShape;
  const pixels = await H.pick([shownIndex[k]]);
  const v = current ? tf.tidy(() => tf.mul(current!, factor) as tf.Tensor3D) : null;
  const x = tf.tidy(() => {
    const clean = tf.tensor4d(Float32Array.from(pixels), [1, h, w, c]);
    return v ? (tf.concat([clean, tf.clipByValue(tf.add(clean, v), 0, 255)]) as tf.Tensor4D) : clean;
  });
  try {
    const logits = await forwardLogits(model, batchOfTensor(x));
    const n = model.numClasses;
    const data = v ? ((await v.data()) as Float32Array).slice() : null;
    post({
      type: 'inspected',
      shown: k,
      factor,
      v: data,
      clean: topK(logits.subarray(0, n), 5),
      perturbed: v ? topK(logits.subarray(n, 2 * n), 5) : [],
    });
  } finally {
    tf.dispose([x, ...(v ? [v] : [])]);
  }
}

/** A perturbation computed by the CLI or another tool (.npy / .npz, any layout and units): read by the same code as `uap evaluate`. */
async function usePerturbation(bytes: ArrayBuffer, name: string): Promise<void> {
  if (!model || !X) throw new Error('load a model and images first');
  const say = (message: string) => post({ type: 'status', message });
  const v = fitPerturbation(arrayFromBytes(new Uint8Array(bytes), name), name, model, { info: say, warn: say });
  current?.dispose();
  current = v;
  const rate = foolingRate(cleanPred!, await predictSet(model, X, v));
  await report(v, { pass: 0, foolingRate: rate, normL2: lpNorm(v, 2), normInf: lpNorm(v, 'inf'), updates: 0, seconds: 0 });
}

/**
 * Pause, resume and stop act at once; everything else runs one message at a time, in order, so a
 * load never overlaps a run and a stopped run has ended before the next one starts.
 */
let queue: Promise<void> = Promise.resolve();

async function handle(m: ToWorker): Promise<void> {
  try {
    if (m.type === 'load') await load(m);
    else if (m.type === 'start') await start(m.settings);
    else if (m.type === 'scale') await scale(m.factor);
    else if (m.type === 'perturbation') await usePerturbation(m.bytes, m.name);
  } catch (err) {
    // The library's messages name options as {templates}: plain names here.
    post({ type: 'error', message: withOptionNames((err as Error).message) });
  }
}

self.onmessage = (e: MessageEvent<ToWorker>) => {
  const m = e.data;
  if (m.type === 'pause') {
    if (!pause) {
      let release = () => {};
      const promise = new Promise<void>((r) => (release = r));
      pause = { promise, release };
    }
  } else if (m.type === 'resume') {
    pause?.release();
    pause = undefined;
  } else if (m.type === 'stop') stopRun();
  // A look at one image is a forward pass: answered at once, even during a run.
  else if (m.type === 'inspect') inspect(m.shown, m.factor).catch((err: Error) => post({ type: 'error', message: err.message }));
  else queue = queue.then(() => handle(m));
};
