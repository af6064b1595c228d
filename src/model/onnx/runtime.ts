import { availableParallelism } from 'node:os';
import type * as tf from '@tensorflow/tfjs';
import type { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-node';
import type { Net } from '../net.js';
import type { Runtime } from '../runtime.js';
import { exportOnnx } from './export.js';

type Ort = typeof import('onnxruntime-node');
let ortModule: Promise<Ort | null> | undefined;

/** onnxruntime-node, or null where it cannot load (another platform, a browser bundle). */
export function loadOrt(): Promise<Ort | null> {
  ortModule ??= import('onnxruntime-node').then(
    (m) => ((m as { default?: Ort }).default?.InferenceSession ? (m as { default: Ort }).default : m),
    () => null,
  );
  return ortModule;
}

const sessionOptions = (): InferenceSession.SessionOptions => ({
  intraOpNumThreads: availableParallelism(),
  graphOptimizationLevel: 'all',
  // No spinning between runs: TF.js works on the same cores in between (it slowed wasm 4x).
  extra: { session: { intra_op: { allow_spinning: '0' } } },
});

/** Backward rows per call: 4 images x 10 candidates; MobileNet v2 at 224 stays near 1 GB. */
const ROWS_PER_CALL = 40;

/** ONNX Runtime sessions for `net`: the forward model and the vector-Jacobian model. */
export async function onnxRuntime(net: Net, inputShape: [number, number, number]): Promise<Runtime | null> {
  const ort = await loadOrt();
  if (!ort) return null;
  const models = exportOnnx(net, inputShape);
  const [fwd, vjp] = await Promise.all([
    ort.InferenceSession.create(models.forward, sessionOptions()),
    ort.InferenceSession.create(models.vjp, sessionOptions()),
  ]);
  const input = (x: tf.Tensor4D): OrtTensor => new ort.Tensor('float32', x.dataSync() as Float32Array, x.shape);
  return {
    name: 'onnxruntime',
    maxRows: ROWS_PER_CALL,
    async forward(x) {
      const out = await fwd.run({ x: input(x) });
      return out.logits.data as Float32Array;
    },
    async vjp(x, dy) {
      const k = dy.length / (x.shape[0] * models.classes);
      const out = await vjp.run({ x: input(x), dy: new ort.Tensor('float32', dy, [x.shape[0], k, models.classes]) });
      return { logits: out.logits.data as Float32Array, dx: out.dx.data as Float32Array };
    },
    async dispose() {
      await Promise.all([fwd.release(), vjp.release()]);
    },
  };
}
