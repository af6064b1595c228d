import { readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { cardFromOnnx, readOnnx } from './onnx/index.js';
import * as tf from '../tf.js';
import type { ModelCard } from '../classifier/card.js';
import { ExportCache, exportCacheRoot, exportKey, fileHash, type ExportMeta } from '../engine/onnx/exportCache.js';
import { ortModulePath } from '../engine/onnx/ortModule.js';
import { eagerModels, loadOrt, runtimeSettings, startRuntime, type Device, type ExportedRuntime } from '../engine/onnx/runtime.js';
import { nchwcBlock } from '../engine/onnx/nchwc.js';
import type { Runtime } from '../engine/runtime.js';
import { maxRelativeDifference } from '../engine/selfcheck.js';
import { batchOfTensor } from '../engine/tfjs/batchTensor.js';
import type { ImageShape } from '../math/imageShape.js';
import type { ModelFiles } from '../engine/onnx/modelFiles.js';
import type { OutputWnids } from './adapters.js';

/**
 * A load's use of the export cache (engine/onnx/exportCache.ts): its key per device, from the model
 * file's bytes, the card, the output map's class lists and ONNX Runtime's version.
 */
export interface LoadCache {
  cache: ExportCache;
  key: (device: Device) => string;
}

/** How far a cached export's probe logits may be from those it gave when it was checked (max relative difference). */
const CACHED_PROBE_TOLERANCE = 1e-4;

let ortVersionOnce: string | undefined;

function ortVersion(): string {
  const file = join(dirname(ortModulePath()), '..', 'package.json');
  return (ortVersionOnce ??= (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version);
}

/** The export cache where it is on and usable (ExportCache.usable). */
function usableCache(): ExportCache | undefined {
  const root = exportCacheRoot();
  const cache = root === undefined ? undefined : new ExportCache(root);
  return cache?.usable() ? cache : undefined;
}

/**
 * The card fields an .onnx file states itself (cardFromOnnx: its name, image size and class count),
 * kept in the export cache by the file's bytes and the flags they depend on: a load from the cache
 * then reads the file only to hash it.
 */
export function onnxCardFields(file: string, inputShape?: ImageShape, logitsLayer?: string): Partial<ModelCard> {
  const cache = usableCache();
  let key: string | undefined;
  try {
    key = cache && exportKey(['card', fileHash(file), inputShape ?? null, logitsLayer ?? null]);
  } catch {
    key = undefined;
  }
  const kept = key === undefined ? undefined : cache!.cardFacts(key);
  if (kept) return { name: basename(file, '.onnx'), format: 'onnx', model: file, ...kept };
  const own = cardFromOnnx(file, readOnnx(file), inputShape, logitsLayer);
  if (key !== undefined && own.inputShape)
    cache!.keepCardFacts(key, { inputShape: own.inputShape, ...(own.numClasses !== undefined ? { numClasses: own.numClasses } : {}) });
  return own;
}

/** The cache for loading `card`'s model file, or none where caching is off, the cache is not this user's alone (ExportCache.usable) or the file cannot be hashed. */
export function loadCacheFor(card: ModelCard, modelPath: string, wnids: OutputWnids | undefined): LoadCache | undefined {
  const cache = usableCache();
  if (!cache) return undefined;
  try {
    const file = fileHash(modelPath);
    const version = ortVersion();
    // The gradient model is written for this machine's blocked layout (onnx/nchwc.ts), known once ONNX Runtime has loaded.
    return { cache, key: (device) => exportKey([file, card, wnids ?? null, device, device === 'cpu' ? nchwcBlock() : 0, version]) };
  } catch {
    return undefined;
  }
}

/**
 * Keeps a checked export for later loads: its models, its facts, its logits on the probe image, and the
 * optimised copies of the models every worker has opened by now (those built at start).
 */
export function keepExport(lc: LoadCache, device: Device, exported: ExportedRuntime, probe: [Float32Array, Float32Array]): void {
  const meta = { facts: exported.facts, probe: { forward: [...probe[0]], images: [...probe[1]] } };
  lc.cache.keep(lc.key(device), exported.files, meta, eagerModels(Object.keys(exported.files.paths)));
}

/** What adds the gradient model's optimised copy, once the workers saved it in `files`'s folder, to the entry kept for this load. */
export function addingOptimised(lc: LoadCache, device: Device, files: ModelFiles): (model: string) => void {
  return (model) => lc.cache.addOptimised(lc.key(device), files, model);
}

/**
 * The runtime of the export kept for this load, once it gives the logits it gave when checked on
 * `probe`; undefined where there is none or it does not (the entry is then dropped and the load
 * exports anew).
 */
export async function cachedRuntime(
  lc: LoadCache,
  shape: ImageShape,
  device: Device,
  probe: tf.Tensor4D,
): Promise<{ runtime: Runtime; entry: string } | undefined> {
  await loadOrt();
  const key = lc.key(device);
  const hit = lc.cache.open(key);
  if (!hit) return undefined;
  let runtime: Runtime;
  try {
    runtime = await startRuntime(runtimeSettings(hit.files, hit.meta.facts, shape, { device }), addingOptimised(lc, device, hit.files));
  } catch {
    hit.files.release();
    lc.cache.forget(key);
    return undefined;
  }
  if (await givesProbe(runtime, probe, hit.meta)) return { runtime, entry: hit.dir };
  await runtime.dispose();
  lc.cache.forget(key);
  return undefined;
}

async function givesProbe(runtime: Runtime, probe: tf.Tensor4D, meta: ExportMeta): Promise<boolean> {
  try {
    const bytes = Uint8Array.from(probe.dataSync());
    const [forward, images] = await Promise.all([runtime.forward(batchOfTensor(probe)), runtime.forwardImages(bytes, 1, null)]);
    return (
      maxRelativeDifference(forward, Float32Array.from(meta.probe.forward)) <= CACHED_PROBE_TOLERANCE &&
      maxRelativeDifference(images, Float32Array.from(meta.probe.images)) <= CACHED_PROBE_TOLERANCE
    );
  } catch {
    return false;
  }
}
