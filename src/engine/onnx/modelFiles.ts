import { closeSync, existsSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The exported ONNX models as files that every worker's ONNX Runtime opens by path. onnxruntime-node
 * takes a model as a path or as a plain ArrayBuffer (not shared memory): bytes would cost a copy in
 * the main thread and another in each worker, kept until that worker's garbage collector runs; a path
 * costs none, and ONNX Runtime reads the file as it parses it. Models
 * are added one at a time as they are exported, so the caller holds one model's bytes at most.
 *
 * On Linux each file is unlinked as soon as it is written and reached through its open descriptor
 * (/proc/self/fd/N, visible to every thread of the process): nothing is left behind when the process
 * ends, however it ends. Elsewhere the files stay in a temporary folder until `release` or the
 * process's exit.
 */
export class ModelFiles {
  /** A path per model name. */
  readonly paths: Record<string, string> = {};
  private readonly descriptors: number[] = [];
  private readonly byDescriptor = process.platform === 'linux' && existsSync('/proc/self/fd');
  private dir?: string;
  private released = false;
  private readonly removeDir = () => {
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  };

  add(name: string, bytes: Uint8Array): void {
    if (this.released) throw new Error('internal: model files already released');
    if (this.byDescriptor) {
      // A folder of its own, gone with the file: an ended process leaves not even an empty folder.
      const dir = mkdtempSync(join(tmpdir(), 'uap-graphs-'));
      try {
        const file = join(dir, `${name}.onnx`);
        writeFileSync(file, bytes);
        const fd = openSync(file, 'r');
        this.descriptors.push(fd);
        this.paths[name] = `/proc/self/fd/${fd}`;
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      return;
    }
    if (!this.dir) {
      this.dir = mkdtempSync(join(tmpdir(), 'uap-graphs-'));
      process.once('exit', this.removeDir);
    }
    const file = join(this.dir, `${name}.onnx`);
    writeFileSync(file, bytes);
    this.paths[name] = file;
  }

  /** Closes the descriptors or removes the files; the paths are invalid afterwards. Idempotent. */
  release(): void {
    if (this.released) return;
    this.released = true;
    for (const fd of this.descriptors) closeSync(fd);
    process.removeListener('exit', this.removeDir);
    this.removeDir();
  }

  /** The files of `models`, written now. */
  static of(models: Record<string, Uint8Array>): ModelFiles {
    const files = new ModelFiles();
    for (const [name, bytes] of Object.entries(models)) files.add(name, bytes);
    return files;
  }
}
