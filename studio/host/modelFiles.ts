/**
 * The browser host's reading of a model's files: fetched from the card's URL, or dropped by the user
 * (the Node host reads them from disk: src/import/load.ts). Either way the import is the core's
 * (classifierNet).
 */
import * as tf from '../../src/tf.js';
import { parseTflite } from '../../src/import/tflite/parse.js';
import { parseOnnx } from '../../src/import/onnx/parse.js';
import type { Net } from '../../src/engine/net.js';
import { classifierNet, type ReadModel } from '../../src/import/importNet.js';
import type { BrowserCard } from '../../src/studio/catalog.js';

/**
 * The model of `card` read as the library's importers take it: from the files the user dropped
 * (`dropped`: model, weights, external data), else fetched from `card.modelUrl`.
 */
export async function readModelFiles(card: BrowserCard, dropped?: File[]): Promise<ReadModel> {
  const bytesOf = async (ext: string) =>
    dropped
      ? new Uint8Array(await dropped.find((f) => f.name.endsWith(ext))!.arrayBuffer())
      : new Uint8Array(await (await fetch(card.modelUrl)).arrayBuffer());
  if (card.format === 'tflite') return { format: 'tflite', model: parseTflite(await bytesOf('.tflite'), card.model), file: card.model };
  if (card.format === 'onnx') {
    // Weights in external data files (model.onnx.data) come as dropped files beside the model.
    const files = dropped
      ? new Map(await Promise.all(dropped.map(async (f) => [f.name, new Uint8Array(await f.arrayBuffer())] as const)))
      : new Map<string, Uint8Array>();
    const file = dropped ? dropped.find((f) => f.name.endsWith('.onnx'))!.name : card.model;
    const external = (location: string, offset: number, length: number | undefined) => {
      const data = files.get(location.split('/').pop()!);
      if (!data) throw new Error(`model ${card.name}: drop its external data file ${location} with it`);
      return data.subarray(offset, length === undefined ? undefined : offset + length);
    };
    return { format: 'onnx', model: parseOnnx(files.get(file) ?? (await bytesOf('.onnx')), file, external), file };
  }
  if (card.format === 'layers') {
    const source = dropped
      ? tf.io.browserFiles([
          dropped.find((f) => f.name.endsWith('.json') && f.name !== 'card.json')!,
          ...dropped.filter((f) => !f.name.endsWith('.json')),
        ])
      : card.modelUrl;
    return { format: 'layers', model: await tf.loadLayersModel(source), file: card.model };
  }
  throw new Error(`model ${card.name}: format "${card.format}" is not supported in the studio (LayersModel, TFLite or ONNX)`);
}

/** The whole classifier as the library's one import path builds it (classifierNet: card preprocessing, model, output mapping). */
export async function netFromModelFiles(card: BrowserCard, dropped?: File[]): Promise<Net> {
  const read = await readModelFiles(card, dropped);
  try {
    return classifierNet(card, read, card.wnids);
  } finally {
    if (read.format === 'layers') read.model.dispose();
  }
}
