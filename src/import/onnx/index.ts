import { closeSync, existsSync, fstatSync, openSync, readSync, realpathSync, statSync } from 'node:fs';
import { checkReadable, readBounded } from '../../io/bounded.js';
import { basename, dirname, relative, resolve, isAbsolute } from 'node:path';
import { UsageError } from '../../errors.js';
import type { ModelCard } from '../../classifier/card.js';
import { imageInput, logitsValue } from './convert.js';
import { parseOnnx, type OnnxModel } from './parse.js';
import type { ImageShape } from '../../math/imageShape.js';

export { parseOnnx, type OnnxModel } from './parse.js';
export { onnxToNet, onnxNet, imageInput, logitsValue, SUPPORTED_OPS } from './convert.js';

/**
 * Reads external data files named by the model, relative to its folder; a location that leads
 * outside that folder (absolute, "..", a symbolic link out) is refused.
 */
function externalReader(file: string) {
  const dir = realpathSync(dirname(resolve(file)));
  return (location: string, offset: number, length: number | undefined): Uint8Array => {
    const path = resolve(dir, location);
    const real = existsSync(path) ? realpathSync(path) : path;
    const rel = relative(dir, real);
    if (isAbsolute(location) || rel.startsWith('..') || isAbsolute(rel))
      throw new UsageError(`${file}: external data "${location}" lies outside the model's folder`);
    if (!existsSync(real)) throw new UsageError(`${file}: external data file ${location} not found beside the model`);
    const fd = openSync(real, 'r');
    try {
      // The model states offset and length: checked against the file before anything is allocated.
      const st = fstatSync(fd);
      checkReadable(`${file}: external data`, st, { what: 'file', kind: 'model' });
      const n = length ?? st.size - offset;
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(n) || offset < 0 || n < 0 || offset + n > st.size)
        throw new UsageError(`${file}: external data file ${location} is shorter than the model says`);
      const out = new Uint8Array(n);
      if (readSync(fd, out, 0, n, offset) !== n)
        throw new UsageError(`${file}: external data file ${location} is shorter than the model says`);
      return out;
    } finally {
      closeSync(fd);
    }
  };
}

/** The last model read for a card lookup: the load that follows it parses a large file once. */
let last: { key: string; model: OnnxModel } | undefined;

/**
 * The parsed model of an .onnx file. A card lookup keeps it for the load that follows; the load takes
 * it (`keep` false), so that the parsed weights do not outlive the Net built from them.
 */
export function readOnnx(file: string, keep = true): OnnxModel {
  const key = existsSync(file) ? `${resolve(file)}|${statSync(file).mtimeMs}|${statSync(file).size}` : '';
  const model = key && last?.key === key ? last.model : parseFile(file);
  last = keep && key ? { key, model } : undefined;
  return model;
}

/** Drops the model a card lookup kept, where the load that follows does not read it (an export from the cache). */
export function forgetParsedOnnx(): void {
  last = undefined;
}

function parseFile(file: string): OnnxModel {
  let bytes: Buffer;
  try {
    bytes = readBounded(file, { what: 'ONNX file', kind: 'model' });
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`${file}: cannot read the ONNX file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return parseOnnx(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), file, externalReader(file));
}

/** Card fields the .onnx file states itself: input size (when static) and class count. */
export function cardFromOnnx(file: string, m: OnnxModel, inputShape?: ImageShape, logitsName?: string): Partial<ModelCard> {
  const input = imageInput(m, file, inputShape);
  const logits = logitsValue(m, file, logitsName);
  const out = m.outputs.find((o) => o.name === logits)?.dims ?? m.outputs[0].dims;
  const classes = out.slice(1).reduce<number>((a, d) => a * (typeof d === 'number' ? d : NaN), 1);
  return {
    name: basename(file, '.onnx'),
    format: 'onnx',
    model: file,
    inputShape: input.shape,
    ...(Number.isInteger(classes) && classes > 1 ? { numClasses: classes } : {}),
  };
}
