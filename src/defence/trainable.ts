import { makeFolder, onPath, writeAtomic } from '../io/atomic.js';
import { join } from 'node:path';
import * as tf from '../tf.js';
import { UsageError } from '../errors.js';
import { type ModelCard, resolveCardPath, cardLabels } from '../classifier/card.js';
import { cardAdapters, cardWnids } from '../import/load.js';
import { fileHandler, fileSaver } from '../import/fileHandler.js';
import { enableWasmTraining } from '../engine/tfjs/wasmTraining.js';

/**
 * A LayersModel opened for training: its weights are TF.js variables, and `logits` maps pixel-space
 * images to logits in the data's label space (the card's preprocessing and output mapping around the
 * layers up to the logits layer), differentiably in those weights.
 */
export interface Trainable {
  readonly model: tf.LayersModel;
  readonly card: ModelCard;
  readonly numClasses: number;
  /** Batch normalisation runs in inference mode (moving statistics), dropout off: fine-tuning, not training from scratch. */
  logits(x: tf.Tensor4D): tf.Tensor2D;
  readonly variables: tf.Variable[];
  dispose(): void;
}

/** Why other formats cannot be fine-tuned here, said the same way everywhere. */
export function refuseUntrainable(card: ModelCard): void {
  if (card.format === 'layers') return;
  throw new UsageError(
    card.format === 'onnx'
      ? `model ${card.name}: fine-tuning needs a TF.js LayersModel (card format "layers"); ONNX models are imported as fixed graphs for attacks only. ` +
          'Fine-tune the PyTorch model in PyTorch on images perturbed by the perturbation.npy files uap writes, then export it to ONNX again.'
      : `model ${card.name}: fine-tuning needs a TF.js LayersModel (card format "layers"); this is a ${card.format === 'tflite' ? 'TFLite' : 'GraphModel'} model, ` +
          'whose weights TF.js holds as constants. Convert the original Keras model with tensorflowjs_converter --output_format tfjs_layers_model.',
  );
}

export async function loadTrainable(card: ModelCard, assets: string): Promise<Trainable> {
  refuseUntrainable(card);
  if (tf.getBackend() === 'wasm') enableWasmTraining();
  const adapters = cardAdapters(card, cardWnids(card, assets)); // first: it may refuse the card
  let model: tf.LayersModel;
  let head: tf.LayersModel;
  try {
    model = await tf.loadLayersModel(fileHandler(resolveCardPath(card, card.model, assets)));
    head = model;
    if (card.logitsLayer) {
      let layer: tf.layers.Layer;
      try {
        layer = model.getLayer(card.logitsLayer);
      } catch {
        model.dispose();
        throw new UsageError(`model ${card.name}: no layer named "${card.logitsLayer}" (the card's logitsLayer)`);
      }
      // Shares the layers (and so the weights) of `model`; saving `model` saves what was trained.
      head = tf.model({ inputs: model.inputs, outputs: layer.output as tf.SymbolicTensor });
    }
  } catch (e) {
    adapters.dispose();
    throw e;
  }
  return {
    model,
    card,
    numClasses: card.numClasses,
    logits: (x) => adapters.post(head.apply(adapters.pre(x), { training: false }) as tf.Tensor),
    variables: model.trainableWeights.map((w) => w.read() as tf.Variable),
    dispose: () => {
      adapters.dispose();
      model.dispose();
    },
  };
}

/**
 * Saves the model (TF.js format) and a card for it into `dir`: the original card with the model path
 * replaced, labels written inline (so the folder stands alone), and where it came from.
 */
export async function saveTrainable(t: Trainable, dir: string, assets: string, provenance: Record<string, unknown>): Promise<string> {
  onPath(dir, 'create the folder', () => makeFolder(dir));
  await t.model.save(fileSaver(dir));
  const { baseDir: _b, measured: _m, ...card } = t.card;
  const keepAssets = (p: string) => (p.startsWith('${assets}/') ? p : resolveCardPath(t.card, p, assets));
  const out: ModelCard & { finetuned: Record<string, unknown> } = {
    ...card,
    name: `${String(provenance.from ?? card.name).replace(/-finetuned-r\d+$/, '')}-finetuned-r${String(provenance.round)}`,
    model: 'model.json',
    labels: typeof card.labels === 'string' && card.labels.startsWith('${assets}/') ? card.labels : cardLabels(t.card, assets),
    ...(card.outputMap?.wnids
      ? {
          outputMap: {
            ...card.outputMap,
            wnids: keepAssets(card.outputMap.wnids),
            ...(card.outputMap.referenceWnids ? { referenceWnids: keepAssets(card.outputMap.referenceWnids) } : {}),
          },
        }
      : {}),
    finetuned: provenance,
  };
  const file = join(dir, 'card.json');
  writeAtomic(file, JSON.stringify(out, null, 1));
  return file;
}

/** The current weights, copied (kept outside any tidy): to restore after an epoch that cost too much accuracy. */
export function snapshotWeights(t: Trainable): tf.Tensor[] {
  return t.variables.map((v) => tf.keep(v.clone()));
}

export function restoreWeights(t: Trainable, saved: tf.Tensor[]): void {
  t.variables.forEach((v, i) => v.assign(saved[i]));
}
