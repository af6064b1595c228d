/**
 * Trains the project's small embedded default classifier (a CNN on Fashion-MNIST) and writes
 * everything `uap` needs to use it to assets/fashion-mnist/: the LayersModel, its model card,
 * labels, 400 test images as PNGs and a README.
 *
 * Usage: npm run train:default [-- --data DIR --epochs N]
 * Data: the gzip idx files of Debian's dataset-fashion-mnist (or FASHION_MNIST_DIR / --data).
 *
 * It depends on tfjs, sharp and a few leaf modules of src/ (Fashion-MNIST's idx files, the backend, one gradient).
 *
 * Speed: tfjs's pure-JS `cpu` backend needs ~20 s per batch of 128 for this net (its Conv2D gradient
 * kernels are naive loops), and `wasm` has no Conv2DBackpropFilter kernel at all. So we train on `wasm`
 * with the Conv2D gradient re-expressed as forward convolutions (fast XNNPACK kernels): ~0.2 s per batch.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '../src/tf.js';
import { initBackend } from '../src/engine/backend.js';
import { conv2dInputGradient } from '../src/engine/tfjs/inputgrad.js';
import sharp from 'sharp';
import { readFashionSplit, FASHION_MNIST_DIR, FASHION_LABELS, FASHION_FOLDERS, type FashionSplit } from '../src/data/fashion.js';

const DEFAULT_DATA_DIR = FASHION_MNIST_DIR;
const SIDE = 28;
const PIXELS = SIDE * SIDE;
const NUM_CLASSES = 10;
const SEED = 20170721;
const BATCH = 128;
const DEFAULT_EPOCHS = 5;
const LEARNING_RATE = 0.001;
const IMAGES_PER_CLASS = 40;
/** model input = pixel * SCALE; stated in the card, applied outside the model. */
const SCALE = 1 / 255;

const LABELS = FASHION_LABELS;
const FOLDERS = FASHION_FOLDERS;

/** The repository root: dist/scripts/train-fashion.js -> ../.. ; scripts/train-fashion.ts via tsx -> .. */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

const OUT_DIR = join(repoRoot(), 'assets', 'fashion-mnist');
const MODEL_DIR = join(OUT_DIR, 'model');
const IMAGES_DIR = join(OUT_DIR, 'images');

class UsageError extends Error {}

interface Options {
  dataDir: string;
  epochs: number;
}

function parseArgs(argv: string[]): Options {
  const opts: Options = { dataDir: process.env.FASHION_MNIST_DIR ?? DEFAULT_DATA_DIR, epochs: DEFAULT_EPOCHS };
  for (let i = 0; i < argv.length; i++) {
    const value = argv[i + 1];
    if (argv[i] === '--data' && value !== undefined) {
      opts.dataDir = value;
      i++;
    } else if (argv[i] === '--epochs' && value !== undefined && /^[1-9]\d*$/.test(value)) {
      opts.epochs = Number(value);
      i++;
    } else {
      throw new UsageError(`unknown or incomplete argument "${argv[i]}" (expected --data DIR, --epochs N)`);
    }
  }
  return opts;
}

// ---------------------------------------------------------------- data

type Split = FashionSplit;

/** A batch as model input: pixel * SCALE (the card's preprocess, applied outside the model). */
function batchInput(split: Split, indices: ArrayLike<number>): tf.Tensor4D {
  const x = new Float32Array(indices.length * PIXELS);
  for (let b = 0; b < indices.length; b++) {
    const src = indices[b] * PIXELS;
    for (let p = 0; p < PIXELS; p++) x[b * PIXELS + p] = split.images[src + p] * SCALE;
  }
  return tf.tensor4d(x, [indices.length, SIDE, SIDE, 1]);
}

function batchLabels(split: Split, indices: ArrayLike<number>): tf.Tensor2D {
  const y = new Float32Array(indices.length * NUM_CLASSES);
  for (let b = 0; b < indices.length; b++) y[b * NUM_CLASSES + split.labels[indices[b]]] = 1;
  return tf.tensor2d(y, [indices.length, NUM_CLASSES]);
}

function range(start: number, end: number): Int32Array {
  return Int32Array.from({ length: end - start }, (_, i) => start + i);
}

/** mulberry32: a tiny seeded PRNG, so the batch order (not just the init) is reproducible. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffled(n: number, rand: () => number): Int32Array {
  const idx = range(0, n);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return idx;
}

// ---------------------------------------------------------------- model

function isOne(v: number | [number, number] | undefined): boolean {
  return v === undefined || (Array.isArray(v) ? v.every((e) => e === 1) : v === 1);
}

/**
 * dL/dW[ky,kx,c,f] = sum over b,y,x of xpad[b,y+ky,x+kx,c] * dy[b,y,x,f]: a 'valid' convolution of the
 * padded input with dy as the kernel, once batch and channels swap places.
 */
function convFilterGrad(x: tf.Tensor4D, dy: tf.Tensor4D, filterShape: number[]): tf.Tensor4D {
  const [kh, kw] = filterShape;
  const [ph, pw] = [(kh - 1) / 2, (kw - 1) / 2];
  const xT = tf.transpose(
    tf.pad(x, [
      [0, 0],
      [ph, ph],
      [pw, pw],
      [0, 0],
    ]),
    [3, 1, 2, 0],
  ); // [C, H+2ph, W+2pw, B]
  const dyT = tf.transpose(dy, [1, 2, 0, 3]); // [H, W, B, F] used as a kernel
  return tf.transpose(tf.conv2d(xT, dyT, 1, 'valid'), [1, 2, 0, 3]); // [C, kh, kw, F] -> [kh, kw, C, F]
}

/**
 * Replaces tfjs's Conv2D gradient with one made of forward convolutions, which `wasm` runs natively.
 * Covers what this model uses (stride 1, no dilation, 'same', NHWC, odd kernels) and refuses the rest.
 */
function useForwardConvGradient(): void {
  tf.registerGradient({
    kernelName: tf.Conv2D,
    inputsToSave: ['x', 'filter'],
    gradFunc: (dy, saved, attrs) => {
      const [x, filter] = saved as [tf.Tensor4D, tf.Tensor4D];
      const a = attrs as unknown as tf.Conv2DAttrs;
      const oddKernel = filter.shape[0] % 2 === 1 && filter.shape[1] % 2 === 1;
      if (!isOne(a.strides) || !isOne(a.dilations) || a.pad !== 'same' || a.dataFormat !== 'NHWC' || !oddKernel)
        throw new Error('train-fashion: the Conv2D gradient here only covers stride 1, same padding, NHWC, odd kernels');
      const g = dy as tf.Tensor4D;
      return { x: () => conv2dInputGradient(g, filter, x.shape, [1, 1], 'same'), filter: () => convFilterGrad(x, g, filter.shape) };
    },
  });
}

function buildModel(): tf.LayersModel {
  // Seeded initializers: tfjs layers otherwise draw from an unseeded generator.
  let seed = SEED;
  const init = (): ReturnType<typeof tf.initializers.glorotUniform> => tf.initializers.glorotUniform({ seed: seed++ });
  const model = tf.sequential({ name: 'fashion_mnist_cnn' });
  model.add(
    tf.layers.conv2d({
      inputShape: [SIDE, SIDE, 1],
      filters: 16,
      kernelSize: 3,
      padding: 'same',
      activation: 'relu',
      kernelInitializer: init(),
      name: 'conv1',
    }),
  );
  model.add(tf.layers.maxPooling2d({ poolSize: 2, name: 'pool1' }));
  model.add(
    tf.layers.conv2d({ filters: 32, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(), name: 'conv2' }),
  );
  model.add(tf.layers.maxPooling2d({ poolSize: 2, name: 'pool2' }));
  model.add(tf.layers.flatten({ name: 'flatten' }));
  model.add(tf.layers.dense({ units: 64, activation: 'relu', kernelInitializer: init(), name: 'fc1' }));
  // No softmax: the attacks need logits, so the last layer is linear and named for the card.
  model.add(tf.layers.dense({ units: NUM_CLASSES, kernelInitializer: init(), name: 'logits' }));
  return model;
}

function trainEpoch(model: tf.LayersModel, optimizer: tf.Optimizer, train: Split, order: Int32Array): number {
  let lossSum = 0;
  let batches = 0;
  for (let start = 0; start < order.length; start += BATCH) {
    const idx = order.subarray(start, Math.min(start + BATCH, order.length));
    const loss = tf.tidy(() => {
      const x = batchInput(train, idx);
      const y = batchLabels(train, idx);
      const l = optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, model.apply(x) as tf.Tensor) as tf.Scalar, true);
      if (l === null) throw new Error('optimizer returned no loss');
      return l;
    });
    lossSum += loss.dataSync()[0];
    loss.dispose();
    batches++;
  }
  return lossSum / batches;
}

/** Top-1 accuracy over a whole split, in chunks to bound memory. */
function accuracy(model: tf.LayersModel, split: Split): number {
  const CHUNK = 1000;
  let correct = 0;
  for (let start = 0; start < split.n; start += CHUNK) {
    const idx = range(start, Math.min(start + CHUNK, split.n));
    const pred = tf.tidy(() => (model.predict(batchInput(split, idx)) as tf.Tensor).argMax(-1).dataSync());
    for (let i = 0; i < idx.length; i++) if (pred[i] === split.labels[idx[i]]) correct++;
  }
  return correct / split.n;
}

// ---------------------------------------------------------------- output

/** Saves as TF.js LayersModel files (model.json + weights.bin): tfjs-node's file:// handler is not available. */
async function saveModel(model: tf.LayersModel, dir: string): Promise<void> {
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const weights = tf.io.CompositeArrayBuffer.join(artifacts.weightData);
      const modelJson = {
        format: 'layers-model',
        generatedBy: `TensorFlow.js tfjs-layers v${tf.version_layers}`,
        convertedBy: null,
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs ?? [] }],
      };
      writeFileSync(join(dir, 'model.json'), JSON.stringify(modelJson));
      writeFileSync(join(dir, 'weights.bin'), Buffer.from(weights));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON', weightDataBytes: weights.byteLength } };
    }),
  );
}

/** Loads model.json + weights.bin back from disk, as a consumer of the asset would. */
async function loadModel(dir: string): Promise<tf.LayersModel> {
  const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as tf.io.ModelJSON;
  const manifest = json.weightsManifest;
  const bin = readFileSync(join(dir, manifest[0].paths[0]));
  const weightData = bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength);
  const weightSpecs = manifest.flatMap((group) => group.weights);
  return tf.loadLayersModel(tf.io.fromMemory({ modelTopology: json.modelTopology, weightSpecs, weightData }));
}

interface Measured {
  testAccuracy: number;
  epochs: number;
  seconds: number;
}

/** JSON with nested values on one line (`"inputShape": [28, 28, 1]`), as the project's cards are written. */
function inlineJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(inlineJson).join(', ')}]`;
  if (typeof v === 'object' && v !== null)
    return `{ ${Object.entries(v)
      .map(([k, e]) => `${JSON.stringify(k)}: ${inlineJson(e)}`)
      .join(', ')} }`;
  return JSON.stringify(v);
}

function writeCard(dir: string, m: Measured): void {
  const card = {
    name: 'fashion-mnist-cnn',
    format: 'layers',
    model: 'model.json',
    inputShape: [SIDE, SIDE, 1],
    preprocess: { scale: SCALE, offset: 0 },
    numClasses: NUM_CLASSES,
    labels: 'labels.txt',
    logitsLayer: 'logits',
    labelSpace: 'own',
    measured: { testAccuracy: m.testAccuracy, trainedBy: 'scripts/train-fashion.ts', epochs: m.epochs, seconds: m.seconds },
  };
  const body = Object.entries(card).map(([k, v]) => `  ${JSON.stringify(k)}: ${inlineJson(v)}`);
  writeFileSync(join(dir, 'card.json'), `{\n${body.join(',\n')}\n}\n`);
  writeFileSync(join(dir, 'labels.txt'), LABELS.join('\n') + '\n');
}

/** The first IMAGES_PER_CLASS test images of each class, in test-set order. */
function pickTestImages(test: Split): number[] {
  const counts = new Array<number>(NUM_CLASSES).fill(0);
  const picked: number[] = [];
  for (let i = 0; i < test.n && picked.length < NUM_CLASSES * IMAGES_PER_CLASS; i++) {
    const c = test.labels[i];
    if (counts[c] < IMAGES_PER_CLASS) {
      counts[c]++;
      picked.push(i);
    }
  }
  return picked;
}

/**
 * Writes the picked images as PNGs: the first half of each class to craft/ (the crafting set X of the
 * demo) and the second half to val/ (its validation set), so the two never share an image.
 */
async function exportImages(test: Split, dir: string): Promise<number> {
  rmSync(dir, { recursive: true, force: true }); // no stale files from an earlier selection
  for (const split of ['craft', 'val']) for (const folder of FOLDERS) mkdirSync(join(dir, split, folder), { recursive: true });
  const picked = pickTestImages(test);
  const seen = new Array<number>(NUM_CLASSES).fill(0);
  for (const i of picked) {
    const pixels = test.images.subarray(i * PIXELS, (i + 1) * PIXELS);
    const split = seen[test.labels[i]]++ < IMAGES_PER_CLASS / 2 ? 'craft' : 'val';
    const file = join(dir, split, FOLDERS[test.labels[i]], `${String(i).padStart(6, '0')}.png`);
    await sharp(pixels, { raw: { width: SIDE, height: SIDE, channels: 1 } })
      .toColourspace('b-w')
      .png({ compressionLevel: 9 })
      .toFile(file);
  }
  return picked.length;
}

function writeReadme(dir: string, m: Measured): void {
  const text = `# Fashion-MNIST: the default classifier and images

The small classifier that \`uap\` uses by default, and 400 test images to run it on.

## Provenance

- Data: [Fashion-MNIST](https://github.com/zalandoresearch/fashion-mnist) by Zalando Research
  (Xiao, Rasul & Vollgraf, 2017), MIT licence, read from the Debian package \`dataset-fashion-mnist\`
  (\`/usr/share/datasets/fashion-mnist/*-ubyte.gz\`).
- Model: trained from scratch by \`scripts/train-fashion.ts\` in this repository; no pretrained weights.

## Contents

- \`model/model.json\`, \`model/weights.bin\`: TF.js LayersModel (load with \`tf.loadLayersModel\`).
- \`model/card.json\`: the model card (input shape, preprocessing, logits layer, measured accuracy).
- \`model/labels.txt\`: the 10 class names, in label-index order.
- \`images/{craft,val}/NN_class/IIIIII.png\`: the first ${IMAGES_PER_CLASS} test images of each class (in test-set
  order), 8-bit grayscale 28x28 PNGs; \`NN\` is the label index, \`IIIIII\` the index in the 10k test set. The first
  ${IMAGES_PER_CLASS / 2} of each class are in \`craft/\` (the demo's crafting set X), the next ${IMAGES_PER_CLASS / 2} in \`val/\` (its validation set).

## Preprocessing convention

Images are stored as pixels 0..255 (black background 0, bright garment, as in the dataset). The model input is
\`pixel / 255\` (range [0, 1]), shape [28, 28, 1]; the scaling happens outside the model
(card: \`"preprocess": { "scale": 1/255, "offset": 0 }\`). The last layer, \`logits\`, has no softmax.

## Model and training

\`conv3x3(16, relu, same) -> maxpool2 -> conv3x3(32, relu, same) -> maxpool2 -> flatten -> dense(64, relu) -> dense(10) logits\`

Trained on the 60k training images with softmax cross-entropy on the logits, Adam (lr ${LEARNING_RATE}),
batch ${BATCH}, ${m.epochs} epochs, seeded Glorot initialisation and a seeded batch order, on the tfjs \`wasm\`
backend. tfjs's pure-JS \`cpu\` backend would need hours, and \`wasm\` lacks the Conv2DBackpropFilter
kernel, so the script replaces the Conv2D gradient with an equivalent one built from forward convolutions.
Training took ${m.seconds} s (${m.epochs} epochs on one CPU core, evaluation not counted).

**Test accuracy (full 10k test set): ${(m.testAccuracy * 100).toFixed(2)}%**, re-measured after loading the saved files.

## Retrain

\`\`\`sh
npm run train:default            # data from /usr/share/datasets/fashion-mnist
npm run train:default -- --data DIR --epochs N   # or FASHION_MNIST_DIR=DIR
\`\`\`

A full run takes about 6 minutes and overwrites everything in this folder. Reruns on the same
machine give bit-identical weights; other CPUs may differ in the last floating-point bits.
`;
  writeFileSync(join(dir, 'README.md'), text);
}

function dirBytes(dir: string): number {
  return readdirSync(dir, { withFileTypes: true }).reduce(
    (sum, e) => sum + (e.isDirectory() ? dirBytes(join(dir, e.name)) : statSync(join(dir, e.name)).size),
    0,
  );
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const dataDir = resolve(opts.dataDir);
  const train = readFashionSplit(dataDir, 'train');
  const test = readFashionSplit(dataDir, 't10k');
  await initBackend('wasm'); // see the header: cpu is far too slow, wasm needs the gradient below
  useForwardConvGradient();
  console.log(`data: ${train.n} train / ${test.n} test images from ${dataDir}; backend ${tf.getBackend()}`);

  const model = buildModel();
  const optimizer = tf.train.adam(LEARNING_RATE);
  const rand = seededRandom(SEED);
  let trainMs = 0; // training steps only, not the per-epoch evaluation
  for (let epoch = 1; epoch <= opts.epochs; epoch++) {
    const t0 = performance.now();
    const loss = trainEpoch(model, optimizer, train, shuffled(train.n, rand));
    trainMs += performance.now() - t0;
    const acc = accuracy(model, test);
    console.log(
      `epoch ${epoch}/${opts.epochs}  loss ${loss.toFixed(4)}  test acc ${(acc * 100).toFixed(2)}%  (${(trainMs / 1000).toFixed(0)} s training)`,
    );
  }
  const seconds = Math.round(trainMs / 100) / 10;

  mkdirSync(MODEL_DIR, { recursive: true });
  await saveModel(model, MODEL_DIR);
  const testAccuracy = accuracy(await loadModel(MODEL_DIR), test);
  const before = accuracy(model, test);
  if (testAccuracy !== before) throw new Error(`reloaded model scores ${testAccuracy}, trained one ${before}`);
  console.log(`saved + reloaded: test accuracy ${(testAccuracy * 100).toFixed(2)}% on ${test.n} images`);

  const measured: Measured = { testAccuracy, epochs: opts.epochs, seconds };
  writeCard(MODEL_DIR, measured);
  const exported = await exportImages(test, IMAGES_DIR);
  writeReadme(OUT_DIR, measured);
  console.log(`wrote ${OUT_DIR}: model ${dirBytes(MODEL_DIR)} B, ${exported} images ${dirBytes(IMAGES_DIR)} B`);
}

main().catch((e: unknown) => {
  if (e instanceof UsageError) {
    console.error(`train-fashion: ${e.message}`);
    process.exit(2);
  }
  throw e;
});
