import { existsSync } from 'node:fs';
import { readBoundedText } from '../io/bounded.js';
import { dirname, resolve, isAbsolute } from 'node:path';
import { UsageError } from '../errors.js';
import type { ImageShape } from '../math/imageShape.js';

/**
 * A model card: the facts about a classifier that the weights file does not state.
 * Images always reach the classifier in pixel space [0,255] RGB; the card says how the model
 * wants them (`preprocess`), and how its outputs map to the label space of the data.
 */
export interface ModelCard {
  name: string;
  /** 'layers' (tf.LayersModel model.json), 'graph' (tf.GraphModel model.json), 'tflite' (a .tflite file) or 'onnx' (a .onnx file). */
  format: 'layers' | 'graph' | 'tflite' | 'onnx';
  /** Path of model.json, the .tflite or the .onnx file, relative to the card file (or absolute). `${assets}/` expands to the assets folder. */
  model: string;
  /** [height, width, channels]; channels 1 means the model takes grayscale. */
  inputShape: ImageShape;
  /**
   * model input = (pixel * scale + offset), or (pixel - mean) / std per channel. With channelOrder
   * BGR the channels are reversed first, so mean and std are given in the model's (BGR) order.
   */
  preprocess: { scale?: number; offset?: number; mean?: number[]; std?: number[]; channelOrder?: 'RGB' | 'BGR' };
  /** Number of classes in the label space (after `outputMap`). */
  numClasses: number;
  /** Label names, inline or a text file with one name per line (relative to the card). */
  labels?: string[] | string;
  /**
   * LayersModel: the layer whose output is the pre-softmax logits. GraphModel: the output node name.
   * TFLite: the tensor name (default: the input of the final SOFTMAX). ONNX: the value name (default:
   * the graph's output, or the input of its final Softmax / LogSoftmax).
   */
  logitsLayer?: string;
  /** True when the chosen output is probabilities: the classifier then uses log-probabilities as logits. */
  outputIsProbabilities?: boolean;
  /**
   * How raw outputs map onto label indices: `dropFirst: 1` removes a background class (1001 -> 1000);
   * `wnids` + `referenceWnids` reorder outputs listed by wnid into the reference (sorted) order.
   */
  outputMap?: { dropFirst?: number; wnids?: string; referenceWnids?: string };
  /** Label space of the data: 'imagenet' (standard sorted-wnid indices) or 'own'. */
  labelSpace?: 'imagenet' | 'own';
  /** Top-1 accuracy measured by `uap evaluate` on the provided validation images (documentation only). */
  measured?: Record<string, unknown>;
  /** Folder of the card file; relative paths resolve against it. Filled in by `readCard`. */
  baseDir?: string;
}

export function resolveCardPath(card: ModelCard, p: string, assetsDir: string): string {
  if (p.startsWith('${assets}/')) return resolve(assetsDir, p.slice('${assets}/'.length));
  if (isAbsolute(p)) return p;
  return resolve(card.baseDir ?? '.', p);
}

function fail(file: string, what: string): never {
  throw new UsageError(`model card ${file}: ${what}`);
}

/** Validates a parsed card object, naming the file and the field on the first problem. */
export function validateCard(raw: unknown, file: string): ModelCard {
  if (typeof raw !== 'object' || raw === null) fail(file, 'expected a JSON object');
  const c = raw as Record<string, unknown>;
  if (typeof c.name !== 'string') fail(file, '"name" must be a string');
  if (!['layers', 'graph', 'tflite', 'onnx'].includes(c.format as string))
    fail(file, '"format" must be "layers", "graph", "tflite" or "onnx"');
  if (typeof c.model !== 'string') fail(file, '"model" must be the path of model.json, the .tflite or the .onnx file');
  const s = c.inputShape;
  if (!Array.isArray(s) || s.length !== 3 || !s.every((v) => Number.isInteger(v) && v > 0) || ![1, 3].includes(s[2]))
    fail(file, '"inputShape" must be [height, width, channels] with channels 1 or 3');
  if (typeof c.preprocess !== 'object' || c.preprocess === null) fail(file, '"preprocess" must be an object');
  const p = c.preprocess as ModelCard['preprocess'];
  for (const k of ['mean', 'std'] as const) {
    const arr = p[k];
    if (arr !== undefined && (!Array.isArray(arr) || arr.length !== (s as number[])[2]))
      fail(file, `"preprocess.${k}" must have one number per channel`);
  }
  if (p.std?.some((v) => v === 0)) fail(file, '"preprocess.std" must not contain 0');
  for (const k of ['scale', 'offset'] as const)
    if (p[k] !== undefined && !Number.isFinite(p[k])) fail(file, `"preprocess.${k}" must be a number`);
  for (const k of ['mean', 'std'] as const) if (p[k]?.some((v) => !Number.isFinite(v))) fail(file, `"preprocess.${k}" must hold numbers`);
  if (p.channelOrder !== undefined && p.channelOrder !== 'RGB' && p.channelOrder !== 'BGR')
    fail(file, '"preprocess.channelOrder" must be "RGB" or "BGR"');
  if (Array.isArray(c.labels) && c.labels.length !== c.numClasses)
    fail(file, `"labels" has ${c.labels.length} names for ${String(c.numClasses)} classes`);
  if (c.logitsLayer !== undefined && typeof c.logitsLayer !== 'string') fail(file, '"logitsLayer" must be a layer or node name');
  if (!Number.isInteger(c.numClasses) || (c.numClasses as number) < 2) fail(file, '"numClasses" must be an integer >= 2');
  if (c.labelSpace !== undefined && c.labelSpace !== 'imagenet' && c.labelSpace !== 'own')
    fail(file, '"labelSpace" must be "imagenet" or "own"');
  return c as unknown as ModelCard;
}

/** A model card read from a JSON file and validated field by field (a UsageError names the file and the field); its folder becomes the base of the paths it holds. */
export function readCard(file: string): ModelCard {
  if (!existsSync(file)) throw new UsageError(`model card ${file}: file not found`);
  let raw: unknown;
  try {
    raw = JSON.parse(readBoundedText(file, { what: 'model card' }));
  } catch (e) {
    if (e instanceof UsageError) throw e;
    fail(file, `not valid JSON (${(e as Error).message})`);
  }
  const card = validateCard(raw, file);
  card.baseDir = dirname(resolve(file));
  return card;
}

/** Label names from the card (inline or file); undefined when the card has none. */
export function cardLabels(card: ModelCard, assetsDir: string): string[] | undefined {
  if (card.labels === undefined) return undefined;
  if (Array.isArray(card.labels)) return card.labels;
  const f = resolveCardPath(card, card.labels, assetsDir);
  if (!existsSync(f)) throw new UsageError(`model card ${card.name}: labels file ${f} not found`);
  return readBoundedText(f, { what: `model card ${card.name}: labels file` })
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
}
