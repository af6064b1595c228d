import { readBounded } from '../../io/bounded.js';
import { basename } from 'node:path';
import { UsageError } from '../../errors.js';
import type { ModelCard } from '../../classifier/card.js';
import { inputPreprocess, inputTensor, logitsTensor } from './compile.js';
import { parseTflite, type TfliteModel } from './parse.js';

export { parseTflite, type TfliteModel } from './parse.js';
export { tfliteToNet, inputPreprocess, inputTensor, logitsTensor, SUPPORTED_OPERATORS } from './compile.js';
export { dequantize } from './dequantize.js';

export function readTflite(file: string): TfliteModel {
  let bytes: Buffer;
  try {
    bytes = readBounded(file, { what: 'TFLite file', kind: 'model' });
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`${file}: cannot read the TFLite file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return parseTflite(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), file);
}

/** Card fields the .tflite file states itself: input size, preprocessing from the input quantisation, class count. */
export function cardFromTflite(file: string, m: TfliteModel = readTflite(file), logitsName?: string): Partial<ModelCard> {
  const input = inputTensor(m);
  if (input.shape.length !== 4 || ![1, 3].includes(input.shape[3]))
    throw new UsageError(`${file}: input ${input.name} has shape [${input.shape.join(', ')}]; expected [1, height, width, 1 or 3]`);
  const out = m.tensors[logitsTensor(m, logitsName)].shape;
  const pre = inputPreprocess(m);
  return {
    name: basename(file, '.tflite'),
    format: 'tflite',
    model: file,
    inputShape: [input.shape[1], input.shape[2], input.shape[3]],
    numClasses: out.slice(1).reduce((a, b) => a * b, 1),
    ...(pre ? { preprocess: pre } : {}),
  };
}
