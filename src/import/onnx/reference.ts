import { spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { ortModulePath } from '../../engine/onnx/ortModule.js';
import * as tf from '../../tf.js';
import type { OnnxModel } from './parse.js';
import { channelsFirst, logitsRoute } from './convert.js';
import { loadOrt } from '../../engine/onnx/runtime.js';
import { maxRelativeDifference } from '../../engine/selfcheck.js';
import { UsageError } from '../../errors.js';

/**
 * A user's .onnx file run as it is by ONNX Runtime on the probe image, the reference every load checks
 * the exported graphs against. Why the file and not TF.js: TF.js runs the same imported Net as the
 * export, so it checks the export only, where the file checks the import too; and ONNX Runtime runs a
 * large model's probe in a fraction of TF.js's time (most of a ResNet-50's load went to TF.js's probe).
 * ONNX Runtime holds about twice the weights while it builds the session: the load runs it once the
 * import's parse and Net are gone, while the workers build their sessions.
 */

/** Which of the file's outputs the import's logits compare with, and how they relate (logitsValue skips a final Softmax / LogSoftmax). */
export interface FileReference {
  output: string;
  outputIs: 'logits' | 'probabilities' | 'log-probabilities';
}

/**
 * Which output of the file the import's logits compare with; undefined where none (the logits an
 * inner value, a softmax over another axis than the classes'): the load then checks against TF.js.
 */
export function fileReference(
  m: OnnxModel,
  file: string,
  card: { logitsLayer?: string; outputIsProbabilities?: boolean },
): FileReference | undefined {
  const { value: logits, skipped } = logitsRoute(m, file, card.logitsLayer);
  const outputs = new Map(m.outputs.map((o) => [o.name, o.dims]));
  if (outputs.has(logits)) return { output: logits, outputIs: 'logits' };
  if (card.logitsLayer !== undefined) return undefined;
  // logitsRoute walked back from the first output over Softmax / LogSoftmax / Identity nodes.
  const output = m.outputs[0].name;
  const normalisers = skipped.filter((n) => n.opType !== 'Identity');
  if (normalisers.length && card.outputIsProbabilities)
    throw new UsageError(
      `${file}: the graph ends in ${normalisers[0].opType}, which the import skips to take the logits before it; do not mark its output as probabilities (--probabilities, "outputIsProbabilities")`,
    );
  if (normalisers.length === 0) return { output, outputIs: 'logits' };
  if (normalisers.length !== 1) return undefined;
  const [node] = normalisers;
  // Over the classes: the last axis of [N, classes] (opset 13 and later default to -1, before to 1).
  const axis = Number(node.attrs.get('axis') ?? (m.opset >= 13 ? -1 : 1));
  if (outputs.get(output)?.length !== 2 || (axis !== 1 && axis !== -1)) return undefined;
  return { output, outputIs: node.opType === 'Softmax' ? 'probabilities' : 'log-probabilities' };
}

/**
 * A process that runs a user's .onnx file once, as it is, on ONNX Runtime: the reference a load
 * checks its export against. Started at the beginning of a load, so that Node and ONNX Runtime start
 * in it while the main thread parses the file; it reads the file only when `run` asks, once the
 * parse and the Net are gone. A process, not the main thread: ONNX Runtime's copy of the weights and
 * its buffers, freed when the session is released, stayed resident in the main thread's malloc heap
 * (about the weights' size on ResNet-50; in a worker thread's arena alike), where a process gives them
 * all back when it exits.
 */
export class FileRunner {
  private readonly replies: unknown[] = [];
  private readonly waiting: ((m: unknown) => void)[] = [];

  private constructor(private readonly child: ChildProcess) {
    const deliver = (m: unknown) => (this.waiting.length ? this.waiting.shift()!(m) : this.replies.push(m));
    child.on('message', deliver);
    child.on('error', () => deliver(null));
    child.on('exit', () => deliver(null));
  }

  /** Starts the process; undefined where ONNX Runtime does not load here or no process starts. */
  static async start(): Promise<FileRunner | undefined> {
    if (!(await loadOrt())) return undefined;
    const ortPath = ortModulePath();
    try {
      const child = spawn(process.execPath, ['-e', RUNNER_SOURCE, ortPath], {
        stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
        serialization: 'advanced',
      });
      return new FileRunner(child);
    } catch {
      // No process to be had (the load then checks against TF.js).
      return undefined;
    }
  }

  private reply<T>(): Promise<T | null> {
    return new Promise((resolve) =>
      this.replies.length ? resolve(this.replies.shift() as T) : this.waiting.push(resolve as (m: unknown) => void),
    );
  }

  /**
   * ONNX Runtime's output `output` of `file` for `pixels` (one image, NHWC), after `pre` (the card's
   * preprocessing) and in the file's layout; undefined where it cannot run the file (an operator it
   * lacks, an input that is not one float image of batch 1 or any batch, an output that is not float)
   * or the process failed. Once per runner: the process exits after it.
   */
  async run(
    file: string,
    output: string,
    pixels: tf.Tensor4D,
    pre: (x: tf.Tensor4D) => tf.Tensor,
  ): Promise<{ data: Float32Array; dims: number[] } | undefined> {
    if (!this.child.connected) return undefined;
    try {
      this.child.send({ file, output, threads: availableParallelism() });
      const input = await this.reply<{ shape: (number | string)[] }>();
      if (!input) return undefined;
      const x = tf.tidy(() => {
        const t = pre(pixels);
        return channelsFirst(input.shape) ? tf.transpose(t, [0, 3, 1, 2]) : t;
      });
      this.child.send({ data: x.dataSync() as Float32Array, dims: x.shape });
      x.dispose();
      return (await this.reply<{ data: Float32Array; dims: number[] }>()) ?? undefined;
    } catch {
      return undefined;
    } finally {
      this.dispose();
    }
  }

  /** Ends the process (a load that needed no reference, or failed). */
  dispose(): void {
    if (this.child.exitCode === null) this.child.kill();
  }
}

/**
 * The runner's process. Plain JS: takes { file, output, threads }, sends the input's shape (or null
 * where it cannot run the file), takes the pixels, sends the output (or null), exits.
 */
const RUNNER_SOURCE = `
const ort = require(process.argv[1]);
const next = () => new Promise((resolve) => process.once('message', resolve));
const done = (m) => process.send(m, () => process.exit(0));
process.on('disconnect', () => process.exit(0));
(async () => {
  const { file, output, threads } = await next();
  let session;
  try {
    // Optimised no further than basic (fusions, constant folding): no blocked copies of the weights.
    session = await ort.InferenceSession.create(file, {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'basic',
      intraOpNumThreads: threads,
      enableCpuMemArena: false,
      logSeverityLevel: 3,
      extra: { session: { disable_prepacking: '1' } },
    });
  } catch {
    return done(null);
  }
  try {
    const [input, ...more] = session.inputMetadata;
    const batch = input && input.shape[0];
    if (more.length || !input.isTensor || input.type !== 'float32' || input.shape.length !== 4 ||
        (typeof batch === 'number' && batch !== 1) || !session.outputNames.includes(output)) return done(null);
    process.send({ shape: input.shape });
    const x = await next();
    const y = (await session.run({ [input.name]: new ort.Tensor('float32', x.data, x.dims) }, [output]))[output];
    done(y.type === 'float32' ? { data: y.data, dims: [...y.dims] } : null);
  } catch {
    done(null);
  }
})();
`;

/** The file's output through `post` (the card's output mapping), as logits are compared; undefined where the mapping does not take it. */
export function fileLogits(out: { data: Float32Array; dims: number[] }, post: (y: tf.Tensor) => tf.Tensor2D): Float32Array | undefined {
  try {
    return tf.tidy(() => post(tf.tensor(out.data, out.dims)).dataSync() as Float32Array);
  } catch {
    return undefined;
  }
}

/**
 * How far the import's logits for the probe are from the file's outputs (maxRelativeDifference),
 * compared where the file normalised them: probabilities against the softmax of the logits (over the
 * classes the output mapping kept), log-probabilities and logits up to the constant each image's
 * normaliser adds, by centring both.
 */
export function referenceDifference(ref: FileReference, logits: Float32Array, file: Float32Array): number {
  if (ref.outputIs === 'logits') return maxRelativeDifference(logits, file);
  if (ref.outputIs === 'log-probabilities') return maxRelativeDifference(centred(logits), centred(file));
  const top = Math.max(...logits);
  const e = logits.map((z) => Math.exp(z - top));
  const sum = (a: Float32Array) => a.reduce((s, v) => s + v, 0);
  const [se, sp] = [sum(e), sum(file)];
  return maxRelativeDifference(
    e.map((v) => v / se),
    file.map((p) => p / sp),
  );
}

function centred(a: Float32Array): Float32Array {
  const mean = a.reduce((s, v) => s + v, 0) / a.length;
  return a.map((v) => v - mean);
}
