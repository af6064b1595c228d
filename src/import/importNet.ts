import type * as tf from '../tf.js';
import { UsageError } from '../errors.js';
import type { ModelCard } from '../classifier/card.js';
import { chain, type Net } from '../engine/net.js';
import { optimizeNet } from '../engine/optimize.js';
import { layersToNet } from './layersGraph.js';
import { preprocessNodes, outputNodes, type OutputWnids } from './adapters.js';
import { tfliteToNet, inputTensor } from './tflite/compile.js';
import type { TfliteModel } from './tflite/parse.js';
import { onnxNet } from './onnx/convert.js';
import type { OnnxModel } from './onnx/parse.js';

/**
 * A model file read by its host (from disk on Node; fetched or dropped in a browser) and parsed, as
 * the importers take it. `file` names it in messages.
 */
export type ReadModel =
  | { format: 'tflite'; model: TfliteModel; file: string }
  | { format: 'onnx'; model: OnnxModel; file: string }
  | { format: 'layers'; model: tf.LayersModel; file: string };

/** What of a card the import uses (a browser card carries the same fields). */
export type ImportCard = Pick<
  ModelCard,
  'name' | 'inputShape' | 'logitsLayer' | 'preprocess' | 'numClasses' | 'outputIsProbabilities' | 'outputMap'
>;

/**
 * The card's inputShape against the size the model file states ([batch, H, W, C]; null or -1 where
 * the file leaves a size open): a mismatch would run the model on images of the wrong size.
 */
export function checkInputShape(card: Pick<ModelCard, 'name' | 'inputShape'>, file: string, stated: (number | null)[]): void {
  const hwc = stated.slice(-3);
  if (hwc.length !== 3) return;
  const wrong = card.inputShape.some((d, i) => hwc[i] !== null && hwc[i]! > 0 && hwc[i] !== d);
  if (wrong)
    throw new UsageError(
      `model card ${card.name}: "inputShape" is ${card.inputShape.join('x')}, but ${file} takes ${hwc.map((d) => (d !== null && d > 0 ? d : '?')).join('x')} images`,
    );
}

/**
 * The whole classifier as one Net: the card's preprocessing, the imported model, its output mapping
 * (`wnids`: the output order an outputMap reorders by). The one import path of the CLI, the library
 * and the studio, whatever read the file.
 */
export function classifierNet(card: ImportCard, read: ReadModel, wnids?: OutputWnids): Net {
  let net: Net;
  if (read.format === 'tflite') {
    checkInputShape(card, read.file, inputTensor(read.model).shape);
    net = tfliteToNet(read.model, read.file, card.logitsLayer);
  } else if (read.format === 'onnx') {
    net = onnxNet(read.model, read.file, card); // the importer checks the card's size itself
  } else {
    checkInputShape(card, read.file, read.model.inputs[0].shape);
    // Keras models keep activations as layers of their own: fused into the convolution before them, a
    // gradient graph's blocked convolutions apply them themselves (onnx/nchwc.ts).
    net = optimizeNet(layersToNet(read.model, card.logitsLayer));
  }
  return chain(preprocessNodes(card), net, outputNodes(card, wnids));
}
