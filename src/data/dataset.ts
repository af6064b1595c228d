import { existsSync, readdirSync, statSync } from 'node:fs';
import { readBoundedText } from '../io/bounded.js';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { IMAGE_EXTENSIONS } from './decode.js';
import { ImageSet } from './imageSet.js';
import { StreamedImages, type StreamOptions } from './stream.js';
import { tarIndex } from './tar.js';
import type { ImageItem, TarMember } from './source.js';
import { Rng } from '../math/random.js';
import type { ImageShape } from '../math/imageShape.js';

export { ImageSet, StreamedImages, type ImageItem };

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
  /** Use the whole members of a tar shard that is cut short (default: refuse it, since what followed is lost). */
  allowPartial?: boolean;
  /** Told what the listing dropped: listed files that do not exist, image files a labels file does not list. */
  warn?: (message: string) => void;
}

const isImage = (f: string) => IMAGE_EXTENSIONS.includes(extname(f).toLowerCase());
const WNID = /^(n\d{8})/;

/** Image files under `dir` (recursively), as absolute paths. */
function imagesUnder(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).filter(isImage).map((f) => resolve(dir, f));
}

/** Lines `path, index`; paths resolved against the file's folder unless `relative` is false (tar member names). */
function readLabelsFile(file: string, relative = true): ImageItem[] {
  if (!existsSync(file)) throw new UsageError(`labels file ${file}: not found (expected a text file of "path, index" lines)`);
  const base = dirname(resolve(file));
  const items: ImageItem[] = [];
  const lines = new Map<string, number>();
  readBoundedText(file, { what: 'labels file' })
    .split('\n')
    .forEach((line, i) => {
      const t = line.trim();
      if (!t || t.startsWith('#')) return;
      const m = /^(.+?)[,\s]\s*(-?\d+)$/.exec(t);
      if (!m) throw new UsageError(`labels file ${file}: line ${i + 1} is not "path, index": ${t.slice(0, 80)}`);
      const path = relative ? resolve(base, m[1].trim()) : m[1].trim().replace(/^\.\//, '');
      const first = lines.get(path);
      if (first !== undefined)
        throw new UsageError(
          `labels file ${file}: line ${i + 1} lists ${m[1].trim().slice(0, 80)} again (first on line ${first}); each image once`,
        );
      lines.set(path, i + 1);
      items.push({ path, label: Number(m[2]) });
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

/** `a-{000..009}.tar` -> a-000.tar ... a-009.tar (webdataset's shard notation; the width of the first bound is kept). */
export function expandShards(spec: string): string[] {
  const m = /\{(\d+)\.\.(\d+)\}/.exec(spec);
  if (!m) return [spec];
  const [lo, hi] = [Number(m[1]), Number(m[2])];
  if (hi < lo || hi - lo > 100_000) throw new UsageError(`data ${spec}: shard range {${m[1]}..${m[2]}} is empty or too large`);
  return Array.from({ length: hi - lo + 1 }, (_, k) => spec.replace(m[0], String(lo + k).padStart(m[1].length, '0')));
}

const isTar = (f: string) => extname(f).toLowerCase() === '.tar';

/** The tar shards a data spec names: a .tar file, a {a..b} shard pattern, or a folder holding only shards. */
function tarShards(spec: string): string[] | undefined {
  const files = expandShards(spec).map((f) => resolve(f));
  if (files.length > 1 || isTar(files[0])) {
    const missing = files.find((f) => !existsSync(f) || !statSync(f).isFile());
    if (missing) throw new UsageError(`data ${spec}: tar shard ${missing} not found`);
    return files;
  }
  if (!existsSync(files[0]) || !statSync(files[0]).isDirectory()) return undefined;
  const entries = readdirSync(files[0]).sort();
  const shards = entries.filter(isTar);
  if (shards.length === 0 || entries.some(isImage)) return undefined;
  return shards.map((f) => join(files[0], f));
}

/** webdataset's sample key: the member name up to the first dot of its base name. */
function sampleKey(name: string): string {
  const slash = name.lastIndexOf('/');
  const dot = name.indexOf('.', slash + 1);
  return dot < 0 ? name : name.slice(0, dot);
}

/**
 * The images of tar shards, in archive order. Labels: a labels file listing member names; else
 * webdataset `.cls` members beside the images (`key.jpg` + `key.cls`); else class folders inside the
 * archive; else wnid file names.
 */
function listShards(spec: string, shards: string[], opts: ListOptions): ImageItem[] {
  const fromFile = opts.labelsFile ? new Map(readLabelsFile(opts.labelsFile, false).map((i) => [i.path, i.label!])) : undefined;
  const items: ImageItem[] = [];
  for (const shard of shards) {
    const { members, kept, truncated } = tarIndex(shard, (name) => name.endsWith('.cls'));
    if (truncated) {
      const t = truncated;
      const what = `data ${shard}: the archive is cut short inside member ${t.index + 1} (${t.name}: ${t.present} of its ${t.size} bytes), so it and every member after it are lost`;
      if (!opts.allowPartial)
        throw new UsageError(`${what}; fetch the shard again, or pass {allowPartial} to use its ${t.index} whole members`);
      opts.warn?.(`${what}; using its ${t.index} whole members ({allowPartial})`);
    }
    const cls = new Map<string, number>();
    for (const [m, bytes] of kept) {
      const t = bytes.toString('utf8', 0, 32).trim();
      if (!/^-?\d+$/.test(t)) throw new UsageError(`data ${shard}: member ${m.name} is not a class index (got "${t.slice(0, 20)}")`);
      cls.set(sampleKey(m.name), Number(t));
    }
    const images = members.filter((m) => isImage(m.name));
    const inFolders = images.length > 0 && images.every((m) => m.name.includes('/'));
    for (const m of images) items.push({ path: shard, member: m, label: shardLabel(spec, m, { fromFile, cls, inFolders }, opts) });
  }
  if (fromFile) {
    const unlisted = items.filter((i) => i.label === undefined).length;
    if (unlisted) opts.warn?.(`data ${spec}: ${unlisted} images are not in the labels file ${opts.labelsFile} and are left out`);
    return items.filter((i) => i.label !== undefined);
  }
  return items;
}

function shardLabel(
  spec: string,
  m: TarMember,
  from: { fromFile?: Map<string, number>; cls: Map<string, number>; inFolders: boolean },
  opts: ListOptions,
): number | undefined {
  if (from.fromFile) return from.fromFile.get(m.name);
  const c = from.cls.get(sampleKey(m.name));
  if (c !== undefined) return c;
  if (from.inFolders && from.cls.size === 0) {
    const folder = m.name.split('/').slice(-2)[0];
    const label = folderLabel(folder, opts);
    if (label === undefined)
      throw new UsageError(`data ${spec}: class folder "${folder}" in the archive is not "NN_name", a wnid, or a label name of the model`);
    return label;
  }
  return fileLabel(m.name, opts);
}

/**
 * Lists a dataset: tar shards (a .tar, a {000..009} pattern, or a folder of .tar files); a labels file; a folder of class subfolders; a folder whose file names start with
 * a wnid; or a plain folder (no labels). A folder holding `dataset.txt` uses it as its labels file.
 */
export function listDataset(dir: string, opts: ListOptions = {}): ImageItem[] {
  const root = resolve(dir);
  const shards = tarShards(dir);
  if (!shards && !existsSync(root)) throw new UsageError(`data ${dir}: folder not found`);
  let items: ImageItem[];
  const implicitLabels = join(root, 'dataset.txt');
  if (shards) {
    items = listShards(dir, shards, opts);
  } else if (opts.labelsFile || (statSync(root).isDirectory() && existsSync(implicitLabels))) {
    const file = opts.labelsFile ?? implicitLabels;
    items = readLabelsFile(file);
    // Paths in a labels file are relative to the file's own folder.
    const missing = items.filter((i) => !existsSync(i.path));
    if (missing.length)
      opts.warn?.(
        `labels file ${file}: ${missing.length} of ${items.length} listed images do not exist and are left out (first: ${missing[0].path}; paths are relative to the labels file's folder)`,
      );
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
      // No folder name says its class (cat/, dog/): numbered in sorted order, as torchvision's ImageFolder does.
      const imageFolder = subdirs.every((d) => folderLabel(d, opts) === undefined);
      if (imageFolder)
        opts.warn?.(
          `data ${dir}: class folders numbered in sorted order as torchvision's ImageFolder does (${subdirs
            .slice(0, 3)
            .map((d, i) => `${d} = ${i}`)
            .join(', ')}${subdirs.length > 3 ? ', ...' : ''}); pass a labels file if the model numbers its classes otherwise`,
        );
      for (const [k, d] of subdirs.entries()) {
        const label = imageFolder ? k : folderLabel(d, opts);
        if (label === undefined)
          throw new UsageError(`data ${dir}: class folder "${d}" is not "NN_name", a wnid, or a label name of the model`);
        for (const f of readdirSync(join(root, d)).sort()) if (isImage(f)) items.push({ path: join(root, d, f), label });
      }
    } else {
      items = entries.filter(isImage).map((f) => ({ path: join(root, f), label: fileLabel(f, opts) }));
    }
  }
  if (opts.sample !== undefined && opts.sample.count < items.length) {
    const keep = new Rng(opts.sample.seed)
      .permutation(items.length)
      .slice(0, opts.sample.count)
      .sort((a, b) => a - b);
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
 * Decodes all of `items` into memory, [h, w, c] uint8 each (for crafting sets, which every pass reads).
 * Unreadable files are skipped and listed (or, with `strict`, stop the load with an error naming the file).
 */
export async function loadImages(
  items: ImageItem[],
  shape: ImageShape,
  opts: { strict?: boolean; concurrency?: number; onProgress?: (done: number, total: number) => void } = {},
): Promise<LoadResult> {
  const stream = new StreamedImages(shape, items, { strict: opts.strict, concurrency: opts.concurrency, cacheBytes: 0 });
  const per = shape[0] * shape[1] * shape[2];
  // Written in place as batches arrive (no second copy of the set); unreadable files leave the tail unused.
  const all = new Uint8Array(items.length * per);
  let decoded = 0;
  for await (const b of stream.batches(64)) {
    all.set(b.pixels, decoded * per);
    decoded += b.items.length;
    opts.onProgress?.(Math.min(items.length, decoded + stream.skipped.length), items.length);
  }
  const pixels = all.subarray(0, decoded * per);
  return { set: new ImageSet(shape, pixels, stream.items), skipped: stream.skipped };
}

/** The images of `items` read batch by batch on demand (for scoring sets of any size). */
export function openImages(items: ImageItem[], shape: ImageShape, opts: StreamOptions = {}): StreamedImages {
  return new StreamedImages(shape, items, opts);
}
