import { closeSync, openSync, readFileSync, readSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { writeAtomic } from '../../io/atomic.js';
import onnxProto from 'onnx-proto';

const onnx = onnxProto.onnx;
type TensorProto = InstanceType<typeof onnx.TensorProto>;

/** Where an initializer's bytes lie: a file beside the model, an offset and a length. */
interface Place {
  location: string;
  offset: number;
  length: number;
}

/**
 * Points the external initializers of the optimised model saved at `model` at equal bytes that the
 * models saved before it (`earlier`, in the same folder) already hold, and removes its own weights
 * file when nothing refers to it any more. Why: ONNX Runtime saves each optimised model with a file of
 * its own weights, and the forward, evaluation and gradient models hold the same convolution filters
 * in its blocked layout; each file's pages are mapped apart, so that every model's sessions held
 * another copy. Returns the bytes no longer mapped twice. The model file is replaced atomically.
 */
export function shareSavedInitializers(model: string, earlier: string[]): number {
  const dir = dirname(model);
  const proto = onnx.ModelProto.decode(readFileSync(model));
  const own = externals(proto);
  if (own.length === 0) return 0;
  const reader = new Reader(dir);
  try {
    // Earlier initializers by length, hashed only where a length is wanted.
    const lengths = new Set(own.map(([, p]) => p.length));
    const byHash = new Map<string, Place>();
    for (const file of earlier)
      for (const [, place] of externals(onnx.ModelProto.decode(readFileSync(file))))
        if (lengths.has(place.length)) byHash.set(hash(reader.bytes(place)), place);
    let saved = 0;
    const ownFiles = new Set(own.map(([, p]) => p.location));
    for (const [tensor, place] of own) {
      const bytes = reader.bytes(place);
      const found = byHash.get(hash(bytes));
      // Equal bytes, not just an equal hash.
      if (!found || !reader.bytes(found).equals(bytes)) continue;
      setPlace(tensor, found);
      saved += place.length;
    }
    if (saved === 0) return 0;
    writeAtomic(model, onnx.ModelProto.encode(proto).finish());
    const stillUsed = new Set(externals(proto).map(([, p]) => p.location));
    for (const file of ownFiles) if (!stillUsed.has(file)) rmSync(join(dir, file), { force: true });
    return saved;
  } finally {
    reader.close();
  }
}

function hash(bytes: Buffer): string {
  return `${bytes.length}:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Every initializer of the main graph whose bytes lie in a file, and where. */
function externals(model: InstanceType<typeof onnx.ModelProto>): [TensorProto, Place][] {
  const out: [TensorProto, Place][] = [];
  for (const t of (model.graph?.initializer ?? []) as TensorProto[]) {
    if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue;
    const info = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
    const location = info.get('location');
    const length = Number(info.get('length'));
    // A location outside the folder is not ONNX Runtime's own saving: left alone.
    if (!location || location.includes('/') || location.includes('\\') || !(length > 0)) continue;
    out.push([t, { location, offset: Number(info.get('offset') ?? 0), length }]);
  }
  return out;
}

function setPlace(t: TensorProto, p: Place): void {
  const rest = (t.externalData ?? []).filter((e) => !['location', 'offset', 'length'].includes(e.key ?? ''));
  t.externalData = [
    { key: 'location', value: p.location },
    { key: 'offset', value: String(p.offset) },
    { key: 'length', value: String(p.length) },
    ...rest,
  ].map((e) => onnx.StringStringEntryProto.create(e));
}

/** Reads byte ranges of the weights files in one folder, each file opened once. */
class Reader {
  private readonly fds = new Map<string, number>();
  constructor(private readonly dir: string) {}

  bytes(p: Place): Buffer {
    let fd = this.fds.get(p.location);
    if (fd === undefined) this.fds.set(p.location, (fd = openSync(join(this.dir, p.location), 'r')));
    const out = Buffer.allocUnsafe(p.length);
    for (let at = 0; at < p.length;) {
      const n = readSync(fd, out, at, p.length - at, p.offset + at);
      if (n === 0) throw new Error(`${p.location}: shorter than its model says`);
      at += n;
    }
    return out;
  }

  close(): void {
    for (const fd of this.fds.values()) closeSync(fd);
  }
}
