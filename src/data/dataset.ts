import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { decodeImage, IMAGE_EXTENSIONS } from './decode.js';
import { ImageSet, type ImageItem } from './imageSet.js';
import { Rng } from '../math/random.js';

export { ImageSet, type ImageItem };

export interface ListOptions {
  /** A labels file: lines `path, index` or `path index` (paths relative to the file's folder). */
  labelsFile?: string;
  /** index -> wnid (ImageNet); lets wnid folder names and `<wnid>_name.JPEG` file names be labels. */
  wnids?: string[];
  /** Label names; a class folder named exactly like a label gets its index. */
  labelNames?: string[];
  /** Keep at most this many images (the first in sorted order). */
  limit?: number;
  /** Keep this many images drawn at random (seeded: the same seed, the same images, in their listed order). */
  sample?: { count: number; seed: number };
  /** Told what the listing dropped: listed files that do not exist, image files a labels file does not list. */
  warn?: (message: string) => void;
}

const isImage = (f: string) => IMAGE_EXTENSIONS.includes(extname(f).toLowerCase());
const WNID = /^(n\d{8})/;

/** Image files under `dir` (recursively), as absolute paths. */
function imagesUnder(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).filter(isImage).map((f) => resolve(dir, f));
}

function readLabelsFile(file: string): ImageItem[] {
  if (!existsSync(file) || !statSync(file).isFile()) throw new UsageError(`labels file ${file}: not found (expected a text file of "path, index" lines)`);
  const base = dirname(resolve(file));
  const items: ImageItem[] = [];
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      const t = line.trim();
      if (!t || t.startsWith('#')) return;
      const m = /^(.+?)[,\s]\s*(-?\d+)$/.exec(t);
      if (!m) throw new UsageError(`labels file ${file}: line ${i + 1} is not "path, index": ${t.slice(0, 80)}`);
      items.push({ path: resolve(base, m[1].trim()), label: Number(m[2]) });
    });
  return items;
}

/** Label of a class folder: "NN_name" -> NN, a wnid -> its index, or a label name. */
function folderLabel(name: string, opts: ListOptions): number | undefined {
  const num = /^(\d+)(?:[_\-. ]|$)/.exec(name);
  if (num) return Number(num[1]);
  const w = WNID.exec(name);
  if (w && opts.wnids) {
    const i = opts.wnids.indexOf(w[1]);
    if (i >= 0) return i;
  }
  const byName = opts.labelNames?.findIndex((l) => l === name || l.split(',')[0].trim() === name);
  return byName !== undefined && byName >= 0 ? byName : undefined;
}

function fileLabel(file: string, opts: ListOptions): number | undefined {
  const w = WNID.exec(basename(file));
  if (!w || !opts.wnids) return undefined;
  const i = opts.wnids.indexOf(w[1]);
  return i >= 0 ? i : undefined;
}

/**
 * Lists a dataset: a labels file; a folder of class subfolders; a folder whose file names start with
 * a wnid; or a plain folder (no labels). A folder holding `dataset.txt` uses it as its labels file.
 */
export function listDataset(dir: string, opts: ListOptions = {}): ImageItem[] {
  const root = resolve(dir);
  if (!existsSync(root)) throw new UsageError(`data ${dir}: folder not found`);
  let items: ImageItem[];
  const implicitLabels = join(root, 'dataset.txt');
  if (opts.labelsFile || (statSync(root).isDirectory() && existsSync(implicitLabels))) {
    const file = opts.labelsFile ?? implicitLabels;
    items = readLabelsFile(file);
    // Paths in a labels file are relative to the file's own folder.
    const missing = items.filter((i) => !existsSync(i.path));
    if (missing.length)
      opts.warn?.(`labels file ${file}: ${missing.length} of ${items.length} listed images do not exist and are left out (first: ${missing[0].path}; paths are relative to the labels file's folder)`);
    items = items.filter((i) => existsSync(i.path));
    if (statSync(root).isDirectory()) {
      const listed = new Set(items.map((i) => i.path));
      const unlisted = imagesUnder(root).filter((f) => !listed.has(f)).length;
      if (unlisted) opts.warn?.(`data ${dir}: ${unlisted} image files are not in the labels file ${file} and are left out`);
    }
  } else if (!statSync(root).isDirectory()) {
    throw new UsageError(`data ${dir}: expected a folder of images`);
  } else {
    const entries = readdirSync(root).sort();
    // A dangling symlink has no stat: treat it as a (non-image) file rather than failing the listing.
    const isDir = (e: string) => statSync(join(root, e), { throwIfNoEntry: false })?.isDirectory() ?? false;
    const subdirs = entries.filter(isDir);
    if (subdirs.length > 0 && !entries.some(isImage)) {
      items = [];
      for (const d of subdirs) {
        const label = folderLabel(d, opts);
        if (label === undefined)
          throw new UsageError(`data ${dir}: class folder "${d}" is not "NN_name", a wnid, or a label name of the model`);
        for (const f of readdirSync(join(root, d)).sort()) if (isImage(f)) items.push({ path: join(root, d, f), label });
      }
    } else {
      items = entries.filter(isImage).map((f) => ({ path: join(root, f), label: fileLabel(f, opts) }));
    }
  }
  if (opts.sample !== undefined && opts.sample.count < items.length) {
    const keep = new Rng(opts.sample.seed).permutation(items.length).slice(0, opts.sample.count).sort((a, b) => a - b);
    items = keep.map((i) => items[i]);
  }
  if (opts.limit !== undefined) items = items.slice(0, opts.limit);
  if (items.length === 0) throw new UsageError(`data ${dir}: no images found (extensions: ${IMAGE_EXTENSIONS.join(' ')})`);
  return items;
}

export interface LoadResult {
  set: ImageSet;
  skipped: { path: string; reason: string }[];
}

/**
 * Decodes `items` to [h, w, c] uint8. Unreadable files are skipped and listed (or, with `strict`,
 * stop the load with an error naming the file).
 */
export async function loadImages(
  items: ImageItem[],
  shape: [number, number, number],
  opts: { strict?: boolean; concurrency?: number; onProgress?: (done: number, total: number) => void } = {},
): Promise<LoadResult> {
  const [h, w, c] = shape;
  const per = h * w * c;
  const decoded: (Uint8Array | null)[] = new Array(items.length).fill(null);
  const skipped: { path: string; reason: string }[] = [];
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      try {
        decoded[i] = await decodeImage(items[i].path, h, w, c as 1 | 3);
      } catch (e) {
        const reason = (e as Error).message.split('\n')[0];
        if (opts.strict) throw new UsageError(`image ${items[i].path}: cannot be decoded (${reason})`);
        skipped.push({ path: items[i].path, reason });
      }
      opts.onProgress?.(++done, items.length);
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency ?? 8 }, worker));
  const kept = items.map((_, i) => i).filter((i) => decoded[i] !== null);
  if (kept.length === 0) throw new UsageError(`none of the ${items.length} images could be decoded (first: ${skipped[0]?.path}: ${skipped[0]?.reason})`);
  const pixels = new Uint8Array(kept.length * per);
  kept.forEach((i, k) => pixels.set(decoded[i]!, k * per));
  return { set: new ImageSet(shape, pixels, kept.map((i) => items[i])), skipped };
}
