import { existsSync } from 'node:fs';
import { readBoundedText } from '../io/bounded.js';
import { join } from 'node:path';
import { listDataset, loadImages, openImages, type ImageSet, type StreamedImages } from './dataset.js';
import { itemName, labelsOf, type ImageItem } from './source.js';
import { fashionSplitFolder } from './fashion.js';
import { assetsDir, assetsHint, EMBEDDED_DIR } from '../paths.js';
import { UsageError } from '../errors.js';
import { namedLog, type Log } from '../log.js';
import type { ImageShape } from '../math/imageShape.js';

/** What choosing and checking a model's images needs of it (every Classifier has it; data sits below the classifier). */
export interface SetModel {
  readonly name: string;
  readonly inputShape: ImageShape;
  readonly numClasses: number;
  readonly labels?: string[];
  readonly labelSpace: 'imagenet' | 'own';
}

/**
 * The image sets of a run, by name or folder: the defaults of a label space, the named sets that come
 * with uap, and listing a set for a model (checked labels) to decode into memory or to stream.
 */

/** Where the images of a run come from. Unset folders default by the model's label space. */
export interface DataSpec {
  /** Crafting set X. */
  data?: string;
  /** Validation set. */
  val?: string;
  labels?: string;
  valLabels?: string;
  limit?: number;
  valLimit?: number;
  /** A seeded random sample of this many images of X / of the validation set (seed: the run's seed). */
  sample?: number;
  valSample?: number;
  strict?: boolean;
  /** Use the whole members of tar shards that are cut short (default: refuse them). */
  allowPartial?: boolean;
}

/**
 * Refuses a spec that chooses a set's images two ways at once: {limit} (the first n in sorted order)
 * and {sample} (n drawn at random) would silently give way to each other.
 */
export function checkDataSpec(spec: DataSpec): void {
  if (spec.limit !== undefined && spec.sample !== undefined)
    throw new UsageError(`{limit} ${spec.limit} and {sample} ${spec.sample}: both choose the images of X; give one`);
  if (spec.valLimit !== undefined && spec.valSample !== undefined)
    throw new UsageError(`{valLimit} ${spec.valLimit} and {valSample} ${spec.valSample}: both choose the validation images; give one`);
}

/** What the embedded Fashion-MNIST images are: the default data of a model of its own label space. */
const EMBEDDED_SET = { inputShape: [28, 28, 1], numClasses: 10 };

/**
 * Default folders: the ImageNet sample/validation images, or the embedded Fashion-MNIST split. A model
 * of its own label space that is not a 28x28 grayscale 10-class classifier is refused: the embedded
 * images would be resized and scored against labels that are not its classes, and every figure would
 * be meaningless (a user's ONNX model given without {labelSpace} or {data}).
 */
export function defaultData(model: SetModel, assets: string): { readonly data: string; readonly val: string } {
  // Getters: a job that names its own folders (job.data ?? defaults.data) never asks, so never fails.
  const folder = (role: 'data' | 'val') => {
    if (
      model.labelSpace === 'own' &&
      (model.inputShape.join('x') !== EMBEDDED_SET.inputShape.join('x') || model.numClasses !== EMBEDDED_SET.numClasses)
    )
      throw new UsageError(
        `{data}: model ${model.name} takes ${model.inputShape.join('x')} images with ${model.numClasses} classes of its own; the default images (the embedded Fashion-MNIST set, 28x28x1, 10 classes) do not fit it: pass its images as {data} (and {val}), or {labelSpace} imagenet for an ImageNet classifier`,
      );
    return defaultFolders(model.labelSpace, assets)[role];
  };
  return {
    get data() {
      return folder('data');
    },
    get val() {
      return folder('val');
    },
  };
}

/** The default crafting and validation folders of a label space. */
export function defaultFolders(space: 'imagenet' | 'own', assets: string): { data: string; val: string } {
  if (space === 'imagenet')
    return { data: join(assets, 'data', 'imagenet-sample-images'), val: join(assets, 'data', 'ilsvrc2012_val_1300') };
  return { data: join(EMBEDDED_DIR, 'images', 'craft'), val: join(EMBEDDED_DIR, 'images', 'val') };
}

/** index -> wnid of the ImageNet label space, when the assets folder has the list. */
export function wnidsOf(assets: string): string[] | undefined {
  const f = join(assets, 'data', 'labels', 'imagenet1k_wnids_sorted.txt');
  return existsSync(f)
    ? readBoundedText(f, { what: 'ImageNet wnid list' })
        .split('\n')
        .map((s) => s.trim())
        .filter(Boolean)
    : undefined;
}

/**
 * The image sets that come with uap, by name: 'fashion:craft' and 'fashion:val' (the embedded
 * Fashion-MNIST images), 'fashion:train' and 'fashion:test' (all 60,000 + 10,000, from Debian's
 * dataset-fashion-mnist, unpacked once into the cache), 'imagenet:sample' and 'imagenet:val' (in the assets folder). Anything else is
 * a folder path.
 */
export function dataFolder(spec: string, assets: string, say?: (m: string) => void): string {
  const named: Record<string, () => string> = {
    'fashion:craft': () => defaultFolders('own', assets).data,
    'fashion:val': () => defaultFolders('own', assets).val,
    'fashion:train': () => fashionSplitFolder('train', say),
    'fashion:test': () => fashionSplitFolder('test', say),
    'imagenet:sample': () => defaultFolders('imagenet', assets).data,
    'imagenet:val': () => defaultFolders('imagenet', assets).val,
  };
  if (named[spec]) {
    if (spec.startsWith('imagenet:') && !assets)
      throw new UsageError(`data ${spec}: ${assetsHint(assets)}; pass the folder holding models/ and data/ as {assets} or set UAP_ASSETS`);
    return named[spec]();
  }
  if (/^[a-z]+:[a-z]+$/.test(spec) && !existsSync(spec))
    throw new UsageError(`data ${spec}: no such named set (${Object.keys(named).join(', ')}) or folder`);
  return spec;
}

export interface SetOptions {
  labels?: string;
  limit?: number;
  sample?: { count: number; seed: number };
  strict?: boolean;
  allowPartial?: boolean;
  assets?: string;
  log?: Log;
  what?: string;
}

/**
 * The SetOptions of one of a DataSpec's two sets, X ('data') or the validation set ('val'): its labels
 * file, limit and sample (drawn with `seed`), and the spec's decoding rules.
 */
export function setOptionsOf(
  spec: DataSpec,
  role: 'data' | 'val',
  seed: number,
  more: Pick<SetOptions, 'assets' | 'log' | 'what'>,
): SetOptions {
  const [labels, limit, count] = role === 'data' ? [spec.labels, spec.limit, spec.sample] : [spec.valLabels, spec.valLimit, spec.valSample];
  return {
    labels,
    limit,
    sample: count === undefined ? undefined : { count, seed },
    strict: spec.strict,
    allowPartial: spec.allowPartial,
    ...more,
  };
}

/** Lists one image set for `model` (a folder, tar shards or a named set: see dataFolder), checking its labels. */
function listSet(model: SetModel, dirOrName: string, opts: SetOptions): { items: ImageItem[]; dir: string; log: Log; what: string } {
  const log = namedLog(opts.log);
  const assets = assetsDir(opts.assets);
  const what = opts.what ?? 'images';
  const dir = dataFolder(dirOrName, assets, (m) => log.info(`${what}: ${m}`));
  const items = listDataset(dir, {
    labelsFile: opts.labels,
    limit: opts.limit,
    sample: opts.sample,
    allowPartial: opts.allowPartial,
    wnids: model.labelSpace === 'imagenet' ? wnidsOf(assets) : undefined,
    labelNames: model.labels,
    warn: (m) => log.warn(`${what}: ${m}`),
  });
  const bad = items.find((i) => i.label !== undefined && (i.label < 0 || i.label >= model.numClasses));
  if (bad) throw new UsageError(`${what}: label ${bad.label} of ${itemName(bad)} is outside the model's ${model.numClasses} classes`);
  return { items, dir, log, what };
}

/**
 * Lists and decodes one image set for `model` into memory (crafting sets, which every pass reads),
 * warning about skipped files. `assets` defaults as everywhere (the `assets` option, else $UAP_ASSETS).
 */
export async function loadSet(model: SetModel, dirOrName: string, opts: SetOptions = {}): Promise<ImageSet> {
  const { items, dir, log, what } = listSet(model, dirOrName, opts);
  const { set, skipped } = await loadImages(items, model.inputShape, { strict: opts.strict });
  if (skipped.length > 0)
    log.warn(
      `${what}: skipped ${skipped.length} of ${items.length} files that could not be decoded (first: ${skipped[0].path}: ${skipped[0].reason}); {strict} makes this an error`,
    );
  log.info(`${what}: ${set.size} ${set.labels ? 'labelled' : 'unlabelled'} images from ${dir}`);
  return set;
}

/** After a pass over a streamed set: how many files did not decode (each left out of every figure). */
export function saySkipped(set: StreamedImages, log: Log, what: string): void {
  const s = set.skipped;
  if (s.length)
    log.warn(
      `${what}: skipped ${s.length} of ${set.listed.length} files that could not be decoded, not counted in any figure (first: ${s[0].path}: ${s[0].reason}); {strict} makes this an error`,
    );
}

/**
 * Lists one image set for `model` to be read batch by batch as it is scored (validation sets: any
 * size in bounded memory). Files that cannot be decoded are found, said and left out as they are met.
 */
export function openSet(model: SetModel, dirOrName: string, opts: SetOptions = {}): StreamedImages {
  const { items, dir, log, what } = listSet(model, dirOrName, opts);
  log.info(`${what}: ${items.length} ${labelsOf(items) ? 'labelled' : 'unlabelled'} images listed in ${dir} (decoded as they are scored)`);
  let said = false;
  return openImages(items, model.inputShape, {
    strict: opts.strict,
    onSkip: (item, reason) => {
      if (said) return;
      said = true;
      log.warn(`${what}: ${itemName(item)} could not be decoded (${reason}); it and any other such file are left out (counted at the end)`);
    },
  });
}
