import { availableParallelism } from 'node:os';
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
 * ONNX Runtime's output `output` of the file for `pixels` (one image, NHWC), after `pre` (the card's
 * preprocessing) and in the file's layout; undefined where it cannot run the file (an operator it
 * lacks, an input that is not one float image of batch 1 or any batch, an output that is not float).
 */
export async function runFile(
  file: string,
  output: string,
  pixels: tf.Tensor4D,
  pre: (x: tf.Tensor4D) => tf.Tensor,
): Promise<{ data: Float32Array; dims: number[] } | undefined> {
  const ort = await loadOrt();
  if (!ort) return undefined;
  let session;
  try {
    // Optimised no further than basic (fusions, constant folding): no blocked copies of the weights;
    // no arena nor prepacking, whose memory would outlive the one run.
    session = await ort.InferenceSession.create(file, {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'basic',
      intraOpNumThreads: availableParallelism(),
      enableCpuMemArena: false,
      logSeverityLevel: 3,
      extra: { session: { disable_prepacking: '1' } },
    });
  } catch {
    return undefined;
  }
  try {
    const [input, ...more] = session.inputMetadata;
    if (more.length || !input.isTensor || input.type !== 'float32' || input.shape.length !== 4) return undefined;
    const batch = input.shape[0];
    if ((typeof batch === 'number' && batch !== 1) || !session.outputNames.includes(output)) return undefined;
    const x = tf.tidy(() => {
      const t = pre(pixels);
      return channelsFirst(input.shape) ? tf.transpose(t, [0, 3, 1, 2]) : t;
    });
    const feed = new ort.Tensor('float32', x.dataSync() as Float32Array, x.shape);
    x.dispose();
    const y = (await session.run({ [input.name]: feed }, [output]))[output];
    return y.type === 'float32' ? { data: y.data as Float32Array, dims: [...y.dims] } : undefined;
  } catch {
    return undefined;
  } finally {
    await session.release();
  }
}

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
