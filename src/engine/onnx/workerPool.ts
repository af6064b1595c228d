import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { ortModulePath } from './ortModule.js';
import type { Device } from './emit.js';
import type { ModelFiles } from './modelFiles.js';
import { shareSavedInitializers } from './sharedInitializers.js';

/**
 * ONNX Runtime sessions in worker threads, one copy per worker, each worker running a share of every
 * batch. Why: onnxruntime-node runs a session synchronously on the calling thread, and several of
 * the kernels the backward graph needs (ConvTranspose above all, Transpose) use one core whatever
 * intraOpNumThreads says, so two 1-thread workers on 2 cores beat one 2-thread session on the
 * gradients (docs/speed.md).
 */

/**
 * A float32 or uint8 input tensor; `data` may be a view of a larger array. It is copied into a buffer
 * the worker hands back with its reply, so every later request reuses memory already touched: writing
 * to freshly allocated memory pays a page fault per page, far more than a copy into reused memory, and
 * for a batch of 224x224 images more than a small model's forward pass.
 */
export interface Feed {
  /** The values (a view of a larger array is fine: they are copied when the request is sent). */
  data: Float32Array | Uint8Array;
  dims: number[];
}

/** A feed as it crosses to the worker: its values at the start of a reused buffer. */
interface WireFeed {
  buffer: ArrayBuffer;
  uint8: boolean;
  length: number;
  dims: number[];
}

/**
 * One request: `fetch` names the outputs sent back; `into` names outputs the worker copies, in order,
 * into views of shared memory instead (the caller's result buffer, so that the workers write their
 * shares of a large output in parallel and nothing is concatenated afterwards).
 */
export interface Shard {
  feeds: Record<string, Feed>;
  into?: Record<string, Float32Array[]>;
}

interface Request {
  id: number;
  model: string;
  fetch: string[];
  feeds: Record<string, WireFeed>;
  into?: Record<string, Float32Array[]>;
}

/** `spare`: the request's feed buffers, handed back for reuse. */
type Reply = ({ outputs: Record<string, Float32Array> } | { error: string }) & { id: number; spare: ArrayBuffer[] };

/** How every session of a pool is built. */
export interface SessionSettings {
  /** ONNX Runtime's prepacked weights: a copy of each matrix product's weights per session, a little faster. */
  prepack: boolean;
  /**
   * Optimise each model once and let every worker open that copy (CPU only; see the worker's
   * `shared`). Off, each worker's session optimises the model itself and keeps its own blocked
   * filters.
   */
  shareOptimised?: boolean;
  /**
   * The models every worker builds a session of at start (default: the first model), the others on
   * first use. Each worker starts with a different one of them, so that workers sharing optimised
   * copies optimise different models at once instead of waiting for one.
   */
  eager?: string[];
  /** Called in the main thread once model `name`'s shared optimised copy is ready in the pool's folder. */
  onOptimised?: (name: string) => void;
}

/** Where a worker saves the optimised copy of the model at `path` (see WORKER_SOURCE). */
const optimisedPath = (path: string) => path.replace(/\.onnx$/, '.opt.onnx');

/** A shared model's stage once every worker may open it (see WORKER_SOURCE). */
const READY = 3;

/**
 * What the main thread does when a worker has saved model `name`'s optimised copy: its initializers
 * pointed at equal bytes of the models ready before it (sharedInitializers.ts), then the model marked
 * ready. A failure to share leaves the saved model as it is (still whole and correct).
 */
function sharer(paths: Record<string, string>, stages: Int32Array, onReady?: (name: string) => void): (name: string) => void {
  const names = Object.keys(paths);
  const optimised = (name: string) => optimisedPath(paths[name]);
  return (name) => {
    const i = names.indexOf(name);
    try {
      shareSavedInitializers(optimised(name), names.filter((n) => Atomics.load(stages, names.indexOf(n)) === READY).map(optimised));
    } catch {
      // Unshared: each file keeps its own copy.
    }
    Atomics.store(stages, i, READY);
    try {
      onReady?.(name);
    } catch {
      // The pool runs whatever a listener does.
    }
  };
}

/** Spare feed buffers a worker's owner keeps: enough for a few requests in flight. */
const MAX_SPARE_BUFFERS = 8;

/**
 * The worker's code, run with `eval` so that it works the same from the compiled library and from the
 * TypeScript sources the tests run (a worker file would need a TypeScript loader there). Plain JS.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const ort = require(workerData.ortPath);
const options = {
  executionProviders: [workerData.device],
  // Errors only: on a GPU, ORT warns that it keeps shape arithmetic on the CPU (it should).
  logSeverityLevel: 3,
  intraOpNumThreads: workerData.threads,
  interOpNumThreads: 1,
  graphOptimizationLevel: 'all',
  // No spinning between runs (with more than one thread per worker): TF.js works on the same cores in
  // between, and spinning threads slowed TF.js wasm 4x.
  extra: { session: { intra_op: { allow_spinning: '0' }, ...(workerData.prepack ? {} : { disable_prepacking: '1' }) } },
};
const message = (e) => String((e && e.message) || e).split('\\n')[0];
// Optimised once, opened by all: ONNX Runtime's optimisations copy the convolution filters into its
// blocked layout, in every session (forward, evaluation and gradient models, in each worker). With
// \`shared\`, the first worker to need a model optimises it and saves the result with its initializers
// in a file beside it; the main thread then points the saved model's initializers at equal bytes in the
// files of the models saved before it (sharedInitializers.ts); every worker, that one included, opens
// the saved model with optimisations off, and ONNX Runtime maps its initializers from the files, so
// that all sessions share one copy in the page cache. Per model, in shared memory: 0 not started, 1
// being optimised, 2 saved (the main thread shares its initializers), 3 ready, 4 failed: not saved, or
// saved but not readable (each worker then optimises its own, as without \`shared\`).
const names = Object.keys(workerData.models);
const stage = workerData.shared && new Int32Array(workerData.shared);
const optimisedPath = (name) => workerData.models[name].replace(/\\.onnx$/, '.opt.onnx');
async function optimised(name) {
  const i = names.indexOf(name);
  if (Atomics.compareExchange(stage, i, 0, 1) === 0) {
    try {
      // Small initializers stay inside the saved graph: shape inference reads some (Pad's pads, shapes)
      // and cannot from the file. Prepacked weights are not saved: sessions that opened saved prepacked
      // weights crashed in a run (ONNX Runtime 1.30); each session prepacks its own (small models only:
      // large ones run unpacked, see runtime.ts).
      const session = { ...options.extra.session, optimized_model_external_initializers_file_name: name + '.opt.bin',
        optimized_model_external_initializers_min_size_in_bytes: '65536' };
      const s = await ort.InferenceSession.create(workerData.models[name], { ...options, optimizedModelFilePath: optimisedPath(name), extra: { session } });
      await s.release();
      Atomics.store(stage, i, 2);
      parentPort.postMessage({ saved: name });
    } catch {
      Atomics.store(stage, i, 4);
    }
  }
  // Polled: a pending Atomics.waitAsync does not keep a worker's event loop alive.
  while (Atomics.load(stage, i) < 3) await new Promise((wake) => setTimeout(wake, 10));
  return Atomics.load(stage, i) === 3;
}
const create = async (name) => {
  if (stage && (await optimised(name)))
    try {
      return await ort.InferenceSession.create(optimisedPath(name), { ...options, graphOptimizationLevel: 'disabled' });
    } catch {
      // A saved graph ONNX Runtime cannot read back: marked failed, so that no other worker tries it.
      Atomics.store(stage, names.indexOf(name), 4);
    }
  return ort.InferenceSession.create(workerData.models[name], options);
};
(async () => {
  // Sessions are made on first use: an evaluation never builds the gradient graph's session (its
  // resident memory, several times the weights', and its build time).
  const sessions = {};
  const session = (name) => (sessions[name] ??= create(name));
  try {
    for (const name of workerData.eager) await session(name);
  } catch (e) {
    parentPort.postMessage({ ready: false, error: message(e) });
    return;
  }
  parentPort.on('message', async (req) => {
    const spare = Object.values(req.feeds).map((f) => f.buffer);
    try {
      const feeds = {};
      for (const [k, f] of Object.entries(req.feeds)) {
        const data = f.uint8 ? new Uint8Array(f.buffer, 0, f.length) : new Float32Array(f.buffer, 0, f.length);
        feeds[k] = new ort.Tensor(f.uint8 ? 'uint8' : 'float32', data, f.dims);
      }
      const out = await (await session(req.model)).run(feeds);
      for (const [k, views] of Object.entries(req.into || {})) {
        const d = out[k].data;
        let at = 0;
        for (const v of views) {
          v.set(d.subarray(at, at + v.length));
          at += v.length;
        }
      }
      const outputs = {};
      for (const k of req.fetch) {
        const d = out[k].data;
        // Hand ORT's own buffer over when the output owns it whole (it does): no copy of dx.
        outputs[k] = d.byteOffset === 0 && d.buffer.byteLength === d.byteLength ? d : d.slice();
      }
      parentPort.postMessage({ id: req.id, outputs, spare }, [...Object.values(outputs).map((a) => a.buffer), ...spare]);
    } catch (e) {
      parentPort.postMessage({ id: req.id, error: message(e), spare }, spare);
    }
  });
  parentPort.postMessage({ ready: true });
})();
`;

class SessionWorker {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (o: Record<string, Float32Array>) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private dead?: Error;
  /** Feed buffers back from the worker, ready for the next requests (see Feed). */
  private spare: ArrayBuffer[] = [];
  readonly ready: Promise<void>;

  /** `shared`: the models' optimisation stages, one Int32 each, shared by the pool's workers (see WORKER_SOURCE). */
  constructor(
    models: Record<string, string>,
    threads: number,
    ortPath: string,
    device: Device,
    options: SessionSettings,
    eager: string[],
    shared?: SharedArrayBuffer,
    onSaved?: (model: string) => void,
  ) {
    // The eager models' sessions are built at once, so that a model ONNX Runtime refuses fails here.
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { models, threads, ortPath, device, eager, prepack: options.prepack, shared },
    });
    // Idle workers must not keep the process alive: unref once ready, ref while a request is pending.
    this.ready = new Promise<void>((resolve, reject) => {
      // The first of its kind: a worker that saved a shared model says so before it is ready.
      const readiness = (m: { ready?: boolean; error?: string }) => {
        if (!('ready' in m)) return;
        this.worker.off('message', readiness);
        if (m.ready) resolve();
        else reject(new Error(`ONNX Runtime: ${m.error}`));
      };
      this.worker.on('message', readiness);
      this.worker.once('error', reject);
      this.worker.once('exit', (code) => reject(new Error(`ONNX Runtime worker exited (code ${code}) before its sessions were built`)));
    }).then(() => {
      if (this.pending.size === 0) this.worker.unref();
    });
    this.worker.on('message', (m: Reply | { ready: boolean } | { saved: string }) => {
      if ('saved' in m) onSaved?.(m.saved);
      if (!('id' in m)) return;
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) this.worker.unref();
      this.spare = [...m.spare, ...this.spare].slice(0, MAX_SPARE_BUFFERS);
      if ('error' in m) p.reject(new Error(`ONNX Runtime: ${m.error}`));
      else p.resolve(m.outputs);
    });
    // A dead worker fails whatever it still owed (out of memory, say) and every later request,
    // instead of leaving them hanging.
    const fail = (e: Error) => {
      this.dead ??= e;
      for (const p of this.pending.values()) p.reject(this.dead);
      this.pending.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`ONNX Runtime worker exited (code ${code})`)));
  }

  run(model: string, shard: Shard, fetch: string[]): Promise<Record<string, Float32Array>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (this.dead) return reject(this.dead);
      const feeds = Object.fromEntries(Object.entries(shard.feeds).map(([name, f]) => [name, this.wire(f)]));
      const request: Request = { id, model, fetch, feeds, into: shard.into };
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage(
        request,
        Object.values(feeds).map((f) => f.buffer),
      );
    });
  }

  /** The feed's values copied to the start of the smallest spare buffer that holds them (or a new one). */
  private wire(f: Feed): WireFeed {
    const data = f.data;
    const bytes = data.byteLength;
    const fits = this.spare.filter((b) => b.byteLength >= bytes).sort((a, b) => a.byteLength - b.byteLength)[0];
    if (fits) this.spare.splice(this.spare.indexOf(fits), 1);
    const buffer = fits ?? new ArrayBuffer(bytes);
    const uint8 = data instanceof Uint8Array;
    (uint8 ? new Uint8Array(buffer, 0, data.length) : new Float32Array(buffer, 0, data.length)).set(data);
    return { buffer, uint8, length: data.length, dims: f.dims };
  }

  terminate(): Promise<number> {
    this.dead ??= new Error('ONNX Runtime: the model was disposed');
    return this.worker.terminate();
  }
}

/** `workers` threads, each holding one session per model with `threadsPerWorker` intra-op threads, on `device`'s execution provider. */
export class SessionPool {
  private constructor(
    private readonly workers: SessionWorker[],
    readonly threadsPerWorker: number,
    private readonly files: ModelFiles,
    /** The models' optimisation stages where the workers share optimised copies (see WORKER_SOURCE). */
    private readonly stages?: Int32Array,
  ) {}

  /**
   * The pool owns `files`: it releases them on dispose or when it cannot start. The first model's
   * session is built at once in every worker.
   */
  static async create(
    files: ModelFiles,
    workers: number,
    threadsPerWorker: number,
    device: Device = 'cpu',
    settings: SessionSettings = { prepack: true },
  ): Promise<SessionPool> {
    const ortPath = ortModulePath();
    // The workers open the models by path (modelFiles.ts): cloning the bytes into each worker's message
    // took tens of seconds for VGG-size graphs, and bytes in shared memory still cost each worker a copy.
    const shared = settings.shareOptimised && device === 'cpu' ? new SharedArrayBuffer(4 * Object.keys(files.paths).length) : undefined;
    const stages = shared && new Int32Array(shared);
    // Optimised copies already in the folder (an export kept from an earlier load) are ready as they are.
    if (stages)
      Object.values(files.paths).forEach((path, i) => {
        if (existsSync(optimisedPath(path))) Atomics.store(stages, i, READY);
      });
    const onSaved = stages && sharer(files.paths, stages, settings.onOptimised);
    const eager = settings.eager ?? Object.keys(files.paths).slice(0, 1);
    const pool = Array.from({ length: workers }, (_, i) => {
      const first = i % eager.length;
      const order = [...eager.slice(first), ...eager.slice(0, first)];
      return new SessionWorker(files.paths, threadsPerWorker, ortPath, device, settings, order, shared, onSaved);
    });
    try {
      await Promise.all(pool.map((w) => w.ready));
    } catch (e) {
      await Promise.all(pool.map((w) => w.terminate()));
      files.release();
      throw e;
    }
    return new SessionPool(pool, threadsPerWorker, files, stages);
  }

  get size(): number {
    return this.workers.length;
  }

  /** The models whose sessions run from the one optimised copy every worker opened (none without sharing). */
  sharedModels(): string[] {
    return Object.keys(this.files.paths).filter((_, i) => this.stages !== undefined && Atomics.load(this.stages, i) === READY);
  }

  /** Runs every shard, each worker taking the next one as it finishes its last; results in shard order. */
  async runShards(model: string, shards: Shard[], fetch: string[]): Promise<Record<string, Float32Array>[]> {
    const results: Record<string, Float32Array>[] = new Array(shards.length);
    let next = 0;
    await Promise.all(
      this.workers.map(async (w) => {
        while (next < shards.length) {
          const i = next++;
          results[i] = await w.run(model, shards[i], fetch);
        }
      }),
    );
    return results;
  }

  async dispose(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.files.release();
  }
}
