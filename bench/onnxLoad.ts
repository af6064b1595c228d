/**
 * One model's load time and memory for `npm run bench:onnx`, in a process of its own (a high-water
 * mark is per process): loads a zoo .onnx as a user's `-m model.onnx` does (torchvision
 * preprocessing), runs a forward pass and one input gradient on `batch` images, and prints one line
 * of JSON: loadSeconds, baseMB (resident after the engine started, before the model), rssAfterLoadMB
 * and peakMB (the process's high-water mark after the gradient), and the same in PSS (basePssMB,
 * pssAfterLoadMB, peakPssMB: sampled, shared pages counted once; see pssSampler.ts).
 *   node dist/bench/onnxLoad.js MODEL.onnx BATCH
 */
import * as tf from '../src/tf.js';
import { initBackend } from '../src/engine/backend.js';
import { loadClassifier } from '../src/import/load.js';
import { forwardLogits, vjp } from '../src/classifier/compute.js';
import { batchOfTensor } from '../src/engine/tfjs/batchTensor.js';
import { TORCHVISION } from './torchvision.js';
import { pssMB, samplePss } from './pssSampler.js';

/** Resident MB now, and the process's high-water mark (as bench:stream and bench:core read them). */
const rssMB = () => process.memoryUsage().rss / 2 ** 20;
const peakRssMB = () => process.resourceUsage().maxRSS / 1024;

async function main(): Promise<void> {
  const [file, batchArg] = process.argv.slice(2);
  const batch = Number(batchArg ?? 8);
  const backend = await initBackend();
  const baseMB = rssMB();
  const basePssMB = pssMB();
  const sampler = samplePss();
  const t0 = performance.now();
  const model = await loadClassifier(file, { backend, card: { preprocess: TORCHVISION, numClasses: 1000 } });
  const loadSeconds = (performance.now() - t0) / 1000;
  const rssAfterLoadMB = rssMB();
  const pssAfterLoadMB = pssMB();
  const [h, w, c] = model.inputShape;
  const t = tf.randomUniform([batch, h, w, c], 0, 255, 'float32', 1) as tf.Tensor4D;
  const x = batchOfTensor(t);
  t.dispose();
  await forwardLogits(model, x);
  const K = model.numClasses;
  const dy = new Float32Array(batch * K);
  for (let i = 0; i < batch; i++) [dy[i * K], dy[i * K + 1]] = [-1, 1];
  await vjp(model, x, dy, 1);
  const peakMB = peakRssMB();
  const peakPssMB = await sampler.stop();
  model.dispose();
  const figures = { engine: model.runsOn, loadSeconds, baseMB, rssAfterLoadMB, peakMB, basePssMB, pssAfterLoadMB, peakPssMB };
  process.stdout.write(JSON.stringify(figures) + '\n');
  process.exit(0);
}

await main();
