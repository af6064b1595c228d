import {
  closeSync,
  copyFileSync,
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { WeightPlace, WeightStore } from './builder.js';

/**
 * The folders' prefix in the temporary folder: the host and the owning process's id follow it (a
 * temporary folder shared between containers holds other hosts' folders, whose ids mean nothing here).
 */
const PREFIX = `uap-graphs-${hostname().replace(/[^A-Za-z0-9.]/g, '_')}-`;
/** Weight arrays start on cache-line boundaries in the weights file (ONNX Runtime maps them in place). */
const ALIGN = 64;
/** The file beside the models that holds their weights. */
export const WEIGHTS = 'weights.bin';

/**
 * The exported ONNX models as files that every worker's ONNX Runtime opens by path, with their weights
 * in one file beside them (ONNX external data) that all the models share, each array written once.
 * Why files: onnxruntime-node takes a model as a path or as a plain ArrayBuffer (not shared memory),
 * and bytes would cost a copy in the main thread and another in each worker. Why external weights:
 * ONNX Runtime maps them from the file, so its sessions (one per model in each worker) share one copy
 * in the page cache instead of each parsing its own out of the model, and loads in a fraction of the
 * time (bench:onnx's load column).
 *
 * The folder lives while the models may still be opened (sessions are built on first use) and goes on
 * `release` or when the process exits. ONNX Runtime resolves external data by its real path, so the
 * files cannot be unlinked early and reached through descriptors; a process killed outright leaves its
 * folder behind, and the next ModelFiles on the same host removes the folders of processes that no
 * longer run. The folder lies in the system's temporary folder, or in `parent` (an export cache's
 * work folder: on its file system, so that files pass between the two as hard links).
 */
export class ModelFiles implements WeightStore {
  /** A path per model name. */
  readonly paths: Record<string, string> = {};
  readonly dir: string;
  private weights?: { fd: number; end: number; placed: WeakMap<Float32Array, number> };
  private released = false;
  private readonly removeDir = () => rmSync(this.dir, { recursive: true, force: true });

  constructor(parent = tmpdir()) {
    mkdirSync(parent, { recursive: true });
    removeOrphans(parent);
    this.dir = mkdtempSync(join(parent, `${PREFIX}${process.pid}-`));
    process.once('exit', this.removeDir);
  }

  add(name: string, bytes: Uint8Array): void {
    this.check();
    const file = join(this.dir, `${name}.onnx`);
    writeFileSync(file, bytes);
    this.paths[name] = file;
  }

  /** Where `data` lies in the weights file, written there on its first request. */
  place(data: Float32Array): WeightPlace {
    this.check();
    const w = (this.weights ??= { fd: openSync(join(this.dir, WEIGHTS), 'w'), end: 0, placed: new WeakMap() });
    let offset = w.placed.get(data);
    if (offset === undefined) {
      offset = Math.ceil(w.end / ALIGN) * ALIGN;
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      for (let at = 0; at < bytes.length;) at += writeSync(w.fd, bytes, at, bytes.length - at, offset + at);
      w.end = offset + bytes.length;
      w.placed.set(data, offset);
    }
    return { location: WEIGHTS, offset, length: data.byteLength };
  }

  /**
   * The file `file` of folder `sourceDir` (an export kept from an earlier load) in this folder: a hard
   * link, a copy across file systems. A model file (`name`.onnx) becomes model `name`; its weights and
   * ONNX Runtime's optimised copies (`name`.opt.onnx, which the workers then open as they are) come
   * as further files.
   */
  addLinked(file: string, sourceDir: string): void {
    this.check();
    const to = join(this.dir, file);
    linkOrCopy(join(sourceDir, file), to);
    const model = /^([a-z]+)\.onnx$/.exec(file);
    if (model) this.paths[model[1]] = to;
  }

  /** Removes the folder; the paths are invalid afterwards. Idempotent. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.closeWeights();
    process.removeListener('exit', this.removeDir);
    this.removeDir();
  }

  /** The files of `models`, written now (weights inside them). */
  static of(models: Record<string, Uint8Array>): ModelFiles {
    const files = new ModelFiles();
    for (const [name, bytes] of Object.entries(models)) files.add(name, bytes);
    return files;
  }

  /** Closes the weights file once every model is written (the sessions open it by path). */
  closeWeights(): void {
    if (this.weights) closeSync(this.weights.fd);
    this.weights = undefined;
  }

  private check(): void {
    if (this.released) throw new Error('internal: model files already released');
  }
}

/** `to` as a hard link to `from`, or a copy where the file system has no hard links or refuses them. */
export function linkOrCopy(from: string, to: string): void {
  try {
    linkSync(from, to);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EXDEV' && code !== 'EPERM') throw e;
    copyFileSync(from, to);
  }
}

/** Removes the model folders in `parent` of processes that ended without removing them (killed, say). */
function removeOrphans(parent: string): void {
  let names: string[];
  try {
    names = readdirSync(parent);
  } catch {
    return;
  }
  for (const name of names) {
    const pid = name.startsWith(PREFIX) ? Number(/^(\d+)-/.exec(name.slice(PREFIX.length))?.[1]) : 0;
    if (!pid || pid === process.pid || running(pid)) continue;
    const dir = join(parent, name);
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
  }
}

/** Whether process `pid` runs on this host (a folder named after it is still in use). */
export function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it runs, as another user.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
