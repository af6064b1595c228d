import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readBoundedText } from '../../io/bounded.js';
import { writeAtomic } from '../../io/atomic.js';
import { ModelFiles, WEIGHTS, linkOrCopy, running } from './modelFiles.js';
import type { NetFacts } from './runtime.js';

/**
 * Exports kept between loads: a second load of the same model file skips the parse, the import, the
 * export and the check against the file, and starts the workers on the models the first load wrote
 * and checked. Keyed by everything the export depends on (the file's bytes, the card, uap's own code,
 * ONNX Runtime's version, the device), so that an entry is either the export this load would write
 * or not found. Only exports whose check passed are kept, with the logits they gave on the probe image:
 * a load from the cache runs the probe again and drops an entry that no longer gives them.
 *
 * Layout under the root: `entries/KEY/` (the models, their weights file and `meta.json`, each entry
 * published whole by a rename), `cards/KEY.json` (what a bare .onnx file says for its card, so that a
 * load from the cache does not parse the file for it) and `work/` (each process's model folder, ModelFiles: entries are hard
 * linked into it, so that an entry removed while in use leaves the process's files in place, and the
 * optimised copies ONNX Runtime saves stay the process's own). The oldest entries (by last use) go
 * once the entries pass MAX_ENTRIES or MAX_BYTES.
 */

/** Bumped when what an entry holds changes shape (the code's own hash covers what the export computes). */
const FORMAT = 1;
const MAX_ENTRIES = 16;
const MAX_BYTES = 4 * 2 ** 30;
const META = 'meta.json';
const MAX_META_BYTES = 2 ** 20;
/** Card facts kept (a few hundred bytes each), the most recently written. */
const MAX_CARDS = 256;

/** What an entry stores beside its models. */
export interface ExportMeta {
  facts: NetFacts;
  /** Logits of the forward and the evaluation model on the load's probe image, as the checked export gave them. */
  probe: { forward: number[]; images: number[] };
  /** Byte sizes of the entry's files (models and weights), checked when it is opened. */
  sizes: Record<string, number>;
}

/**
 * The cache's folder: UAP_CACHE_DIR, else $XDG_CACHE_HOME/uap/exports (~/.cache/uap/exports); none
 * (no caching) where UAP_CACHE_DIR is empty, `off` or `0`.
 */
export function exportCacheRoot(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const set = env.UAP_CACHE_DIR;
  if (set !== undefined) return ['', 'off', '0'].includes(set.trim()) ? undefined : resolve(set);
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'uap', 'exports');
}

let codeHashOnce: string | undefined;

/** A hash of uap's own running code (every module of the library): a changed exporter never meets an old entry. */
export function codeHash(): string {
  if (codeHashOnce) return codeHashOnce;
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const hash = createHash('sha256');
  const walk = (dir: string) => {
    for (const name of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const path = join(dir, name.name);
      if (name.isDirectory()) walk(path);
      else if (/\.(js|ts|mjs)$/.test(name.name) && !name.name.endsWith('.d.ts'))
        hash.update(path.slice(root.length)).update(readFileSync(path));
    }
  };
  walk(root);
  return (codeHashOnce = hash.digest('hex'));
}

/** The hashes this process computed, by path, with the file's identity (device, inode, size, times) then. */
const hashed = new Map<string, { stamp: string; hash: string }>();

/**
 * SHA-256 of a file's bytes, read in chunks (a large model is not held whole for it); computed once per
 * process while the file's identity and times stay the same (a load's card lookup and export key).
 */
export function fileHash(path: string): string {
  const st = statSync(path, { bigint: true });
  const stamp = `${st.dev}|${st.ino}|${st.size}|${st.mtimeNs}|${st.ctimeNs}`;
  const known = hashed.get(path);
  if (known?.stamp === stamp) return known.hash;
  const hash = hashBytes(path);
  hashed.set(path, { stamp, hash });
  return hash;
}

function hashBytes(path: string): string {
  const hash = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const chunk = new Uint8Array(4 * 2 ** 20);
    for (let n; (n = readSync(fd, chunk, 0, chunk.length, null)) > 0;) hash.update(chunk.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/** The key of an export: a hash of the JSON of `parts` (the file's hash, the card, the device...) with the format and uap's code. */
export function exportKey(parts: unknown[]): string {
  return createHash('sha256')
    .update(JSON.stringify([FORMAT, codeHash(), ...parts]))
    .digest('hex')
    .slice(0, 40);
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isNumbers = (v: unknown, n: number): v is number[] =>
  Array.isArray(v) && v.length === n && v.every((x) => typeof x === 'number' && Number.isFinite(x));

/** What a model file says of itself for its card where it has none: the image size and the class count. */
export interface CardFacts {
  inputShape: [number, number, number];
  numClasses?: number;
}

/** A kept CardFacts if its fields are in range; undefined otherwise. */
export function readCardFacts(json: unknown): CardFacts | undefined {
  const { inputShape, numClasses } = (json ?? {}) as Partial<CardFacts>;
  const positive = (v: unknown) => isCount(v) && v > 0;
  if (!Array.isArray(inputShape) || inputShape.length !== 3 || !inputShape.every(positive)) return undefined;
  if (numClasses !== undefined && !positive(numClasses)) return undefined;
  return { inputShape, ...(numClasses !== undefined ? { numClasses } : {}) };
}

/** The meta.json of the entry in `dir`, read bounded; undefined where a field is out of range (readMeta). */
function readEntryMeta(dir: string): ExportMeta | undefined {
  return readMeta(JSON.parse(readBoundedText(join(dir, META), { what: 'export cache entry', maxBytes: MAX_META_BYTES })));
}

function checkedKey(key: string): string {
  if (!/^[0-9a-f]{40}$/.test(key)) throw new Error(`internal: not an export key: ${key}`);
  return key;
}

/** `meta.json`'s content if it has every field in range; undefined otherwise. */
export function readMeta(json: unknown): ExportMeta | undefined {
  if (!json || typeof json !== 'object') return undefined;
  const { facts, probe, sizes } = json as Partial<ExportMeta>;
  if (!facts || !probe || !sizes || typeof sizes !== 'object') return undefined;
  const { classes, weightBytes, convWeightBytes, multiplyAdds, activations } = facts;
  if (![classes, weightBytes, convWeightBytes, multiplyAdds, activations].every(isCount) || classes < 1) return undefined;
  if (!isNumbers(probe.forward, classes) || !isNumbers(probe.images, classes)) return undefined;
  if (!Object.entries(sizes).every(([name, size]) => /^[a-z]+(\.opt)?\.(onnx|bin)$/.test(name) && isCount(size))) return undefined;
  if (!Object.keys(sizes).some((n) => /^[a-z]+\.onnx$/.test(n))) return undefined;
  return { facts: { classes, weightBytes, convWeightBytes, multiplyAdds, activations }, probe, sizes };
}

export class ExportCache {
  private readonly maxEntries: number;
  private readonly maxBytes: number;

  /** `limits`: how many entries and bytes it keeps (default MAX_ENTRIES, MAX_BYTES). */
  constructor(
    readonly root: string,
    limits: { maxEntries?: number; maxBytes?: number } = {},
  ) {
    this.maxEntries = limits.maxEntries ?? MAX_ENTRIES;
    this.maxBytes = limits.maxBytes ?? MAX_BYTES;
  }

  /**
   * Whether the cache may be used: its folders exist (made private where missing) and belong to this
   * user, writable by no one else. Another user who could write an entry could make a load run models
   * of their choosing (UAP_CACHE_DIR pointed at a shared folder, say): such a cache is not used.
   */
  usable(): boolean {
    try {
      for (const dir of [this.root, join(this.root, 'entries'), this.workDir]) {
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        const st = statSync(dir);
        const uid = process.getuid?.();
        if (!st.isDirectory() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o022) !== 0) return false;
      }
      return true;
    } catch {
      return false;
    }
  }

  /** The folder the process's model files go in, on the cache's file system. */
  get workDir(): string {
    return join(this.root, 'work');
  }

  private entry(key: string): string {
    return join(this.root, 'entries', checkedKey(key));
  }

  /** Whether an entry is kept under `key` (whole or not: `open` says). */
  has(key: string): boolean {
    return existsSync(join(this.entry(key), META));
  }

  /**
   * The export kept under `key`, linked into a new model folder of this process, with its meta; none
   * when there is no entry or it is not whole (then removed). Marks the entry used.
   */
  open(key: string): { files: ModelFiles; meta: ExportMeta; dir: string } | undefined {
    const dir = this.entry(key);
    if (!existsSync(join(dir, META))) return undefined;
    let meta: ExportMeta | undefined;
    try {
      meta = readEntryMeta(dir);
      if (meta && !Object.entries(meta.sizes).every(([name, size]) => statSync(join(dir, name), { throwIfNoEntry: false })?.size === size))
        meta = undefined;
    } catch {
      meta = undefined;
    }
    if (!meta) {
      this.forget(key);
      return undefined;
    }
    const files = new ModelFiles(this.workDir);
    try {
      for (const file of Object.keys(meta.sizes)) files.addLinked(file, dir);
      const now = new Date();
      utimesSync(join(dir, META), now, now);
    } catch {
      files.release();
      return undefined;
    }
    return { files, meta, dir };
  }

  /**
   * Keeps the models of `files` under `key`, with ONNX Runtime's optimised copies of the models in
   * `optimised` where the workers saved them (models whose sessions every worker opened from them; a
   * model optimised later, the gradient model, is optimised again by each process that needs it).
   * Best effort: a cache that cannot be written (full, read-only) leaves the load as it was.
   */
  keep(key: string, files: ModelFiles, meta: Omit<ExportMeta, 'sizes'>, optimised: string[] = []): void {
    const dir = this.entry(key);
    const staging = `${dir}.${process.pid}.tmp`;
    try {
      if (existsSync(join(dir, META))) return;
      rmSync(staging, { recursive: true, force: true });
      mkdirSync(staging, { recursive: true });
      const sizes: Record<string, number> = {};
      const saved = optimisedFiles(files.dir, optimised);
      // No weights file where every array was small enough to stay inside the models.
      const weights = existsSync(join(files.dir, WEIGHTS)) ? [WEIGHTS] : [];
      for (const file of [...weights, ...Object.values(files.paths).map((p) => basename(p)), ...saved]) {
        linkReadOnly(join(files.dir, file), join(staging, file));
        sizes[file] = statSync(join(staging, file)).size;
      }
      writeFileSync(join(staging, META), JSON.stringify({ ...meta, sizes }));
      rmSync(dir, { recursive: true, force: true });
      renameSync(staging, dir);
      this.trim();
    } catch {
      rmSync(staging, { recursive: true, force: true });
    }
  }

  /**
   * Adds the optimised copy of `model` that the workers saved in `files`'s folder after the entry was
   * kept (the gradient model, optimised on first use), so that later loads open it as it is. Only where
   * the entry holds every other optimised copy of the folder (the copy may read their weights files)
   * and none of this model's yet. Best effort, as `keep`.
   */
  addOptimised(key: string, files: ModelFiles, model: string): void {
    const dir = this.entry(key);
    const metaFile = join(dir, META);
    try {
      if (!existsSync(metaFile)) return;
      const meta = readEntryMeta(dir);
      const own = [`${model}.opt.bin`, `${model}.opt.onnx`].filter((f) => existsSync(join(files.dir, f)));
      if (!meta || !own.includes(`${model}.opt.onnx`) || own.some((f) => existsSync(join(dir, f)))) return;
      const others = readdirSync(files.dir).filter((f) => f.endsWith('.opt.onnx') && f !== `${model}.opt.onnx`);
      if (!others.every((f) => f in meta.sizes)) return;
      // The weights before the model that reads them: a reader takes only what meta.json lists.
      for (const f of own) {
        linkReadOnly(join(files.dir, f), join(dir, f));
        meta.sizes[f] = statSync(join(dir, f)).size;
      }
      writeAtomic(metaFile, JSON.stringify(meta));
    } catch {
      // Left as it was: later loads optimise this model themselves.
    }
  }

  /** The card facts kept under `key` (cardFacts), or none. */
  cardFacts(key: string): CardFacts | undefined {
    const file = join(this.root, 'cards', `${checkedKey(key)}.json`);
    try {
      if (!existsSync(file)) return undefined;
      const facts = readCardFacts(JSON.parse(readBoundedText(file, { what: 'export cache card', maxBytes: MAX_META_BYTES })));
      if (!facts) rmSync(file, { force: true });
      return facts;
    } catch {
      return undefined;
    }
  }

  /** Keeps a model file's card facts under `key` (a bare .onnx's card otherwise parses the whole file); best effort. */
  keepCardFacts(key: string, facts: CardFacts): void {
    const dir = join(this.root, 'cards');
    try {
      writeAtomic(join(dir, `${checkedKey(key)}.json`), JSON.stringify(facts));
      const kept = readdirSync(dir)
        .filter((f) => f.endsWith('.json'))
        .map((f) => ({ f, t: statSync(join(dir, f), { throwIfNoEntry: false })?.mtimeMs ?? 0 }))
        .sort((a, b) => b.t - a.t);
      for (const { f } of kept.slice(MAX_CARDS)) rmSync(join(dir, f), { force: true });
    } catch {
      // Not kept: the next load parses the file again.
    }
  }

  /** Removes the entry under `key` (a process using it keeps its own links). */
  forget(key: string): void {
    rmSync(this.entry(key), { recursive: true, force: true });
  }

  /** Removes the least recently used entries beyond MAX_ENTRIES or MAX_BYTES, and stale staging folders. */
  private trim(): void {
    const entries = join(this.root, 'entries');
    const found: { dir: string; used: number; bytes: number }[] = [];
    for (const name of readdirSync(entries)) {
      const dir = join(entries, name);
      if (name.endsWith('.tmp')) {
        const pid = Number(/\.(\d+)\.tmp$/.exec(name)?.[1]);
        if (pid && !running(pid)) rmSync(dir, { recursive: true, force: true });
        continue;
      }
      const meta = statSync(join(dir, META), { throwIfNoEntry: false });
      const bytes = readdirSync(dir).reduce((sum, f) => sum + (statSync(join(dir, f), { throwIfNoEntry: false })?.size ?? 0), 0);
      found.push({ dir, used: meta?.mtimeMs ?? 0, bytes });
    }
    found.sort((a, b) => b.used - a.used);
    let total = 0;
    found.forEach((e, i) => {
      total += e.bytes;
      // The newest entry stays whatever its size.
      if (i > 0 && (i >= this.maxEntries || total > this.maxBytes)) rmSync(e.dir, { recursive: true, force: true });
    });
  }
}

/**
 * The optimised copies of `models` in `dir` (`name`.opt.onnx) with the weights files beside them that
 * they read (`name`.opt.bin, of these models only: once shared, one model's copy reads another's
 * file), or none where a model has no copy.
 */
function optimisedFiles(dir: string, models: string[]): string[] {
  if (!models.every((m) => existsSync(join(dir, `${m}.opt.onnx`)))) return [];
  return models.flatMap((m) => [`${m}.opt.onnx`, ...(existsSync(join(dir, `${m}.opt.bin`)) ? [`${m}.opt.bin`] : [])]);
}

/**
 * `to` as a link to `from` (linkOrCopy), read-only, as the entry's files are: a process that wrote into
 * its linked copy would change the entry under every other.
 */
function linkReadOnly(from: string, to: string): void {
  linkOrCopy(from, to);
  chmodSync(to, 0o444);
}
