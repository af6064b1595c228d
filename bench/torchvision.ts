import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { findCard, loadNet } from '../src/import/load.js';
import { resolveCardPath, type ModelCard } from '../src/classifier/card.js';
import type { Net } from '../src/engine/net.js';

/** torchvision's ImageNet normalisation in pixel units (mean and std x 255): the card of a zoo .onnx. */
export const TORCHVISION = { mean: [123.675, 116.28, 103.53], std: [58.395, 57.12, 57.375] };

/**
 * The zoo's .onnx files of `names` that exist in `dir` (`--zoo=DIR` or UAP_ZOO), saying so where there
 * are none: benches that take zoo models beside the assets' skip them then.
 */
export function zooFiles(bench: string, dir: string | undefined, names: string[]): string[] {
  const files = dir && existsSync(dir) ? names.map((m) => join(dir, `${m}.onnx`)).filter((f) => existsSync(f)) : [];
  if (!files.length) console.log(`${bench}: no zoo models (--zoo=DIR or UAP_ZOO; make them with scripts/make-onnx-fixtures.py --zoo DIR)`);
  return files;
}

/**
 * A bench model's card and Net: a bundled name, or a zoo .onnx file read with torchvision's
 * normalisation.
 */
export async function benchNet(name: string, assets: string): Promise<{ card: ModelCard; net: Net }> {
  const card = findCard(name, name.endsWith('.onnx') ? { preprocess: TORCHVISION } : {}, assets);
  return { card, net: await loadNet(card, resolveCardPath(card, card.model, assets), assets) };
}
