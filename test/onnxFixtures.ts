import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ModelCard } from '../src/classifier/card.js';

/**
 * The PyTorch ONNX fixtures of scripts/make-onnx-fixtures.py (test/fixtures/onnx): each model with its
 * card fields and PyTorch autograd's logits and input gradient on two images. Read by the ONNX import
 * tests (CPU engine, TF.js) and the GPU engine's.
 */

export const FIXTURE_DIR = join(import.meta.dirname, 'fixtures', 'onnx');

export interface Fixture {
  inputShape: [number, number, number];
  numClasses: number;
  preprocess: ModelCard['preprocess'];
  pixels: number[];
  dy: number[];
  logits: number[];
  dx: number[];
}

export const fixtureNames = readdirSync(FIXTURE_DIR)
  .filter((f) => f.endsWith('.json'))
  .map((f) => f.slice(0, -'.json'.length))
  .sort();

export const readFixture = (name: string) => JSON.parse(readFileSync(join(FIXTURE_DIR, `${name}.json`), 'utf8')) as Fixture;

/** The card of an ONNX model file (a fixture's, by default) with the given fields. */
export const fixtureCard = (
  name: string,
  f: Pick<Fixture, 'inputShape' | 'numClasses' | 'preprocess'>,
  model = join(FIXTURE_DIR, `${name}.onnx`),
): ModelCard => ({
  name,
  format: 'onnx',
  model,
  inputShape: f.inputShape,
  preprocess: f.preprocess,
  numClasses: f.numClasses,
  labelSpace: 'own',
});
