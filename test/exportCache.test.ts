import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '../src/tf.js';
import onnxProto from 'onnx-proto';
import './helpers.js';
import { initBackend } from '../src/engine/backend.js';
import { loadClassifier } from '../src/import/load.js';
import { forwardLogits, vjp } from '../src/classifier/compute.js';
import { maxRelativeDifference } from '../src/engine/selfcheck.js';
import { batchOfTensor } from '../src/engine/tfjs/batchTensor.js';
import { ExportCache, exportCacheRoot, readCardFacts, readMeta, type ExportMeta } from '../src/engine/onnx/exportCache.js';
import { ModelFiles, WEIGHTS } from '../src/engine/onnx/modelFiles.js';
import { loadOrt } from '../src/engine/onnx/runtime.js';
import { OnnxGraph } from '../src/engine/onnx/builder.js';
import { FIXTURE_DIR, fixtureCard, readFixture } from './onnxFixtures.js';

/**
 * The export cache: an .onnx model's second load runs on the export the first one wrote and checked,
 * gives the same logits and gradients (PyTorch's), and an entry that is not whole, or whose export no
 * longer gives its probe logits, is dropped and the model exported anew.
 */

const meta = (classes = 2): Omit<ExportMeta, 'sizes'> => ({
  facts: { classes, weightBytes: 64, convWeightBytes: 32, multiplyAdds: 1000, activations: 100 },
  probe: { forward: Array.from({ length: classes }, (_, i) => i + 0.5), images: Array.from({ length: classes }, (_, i) => i - 0.5) },
});

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'uap-cache-test-'));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

/** A model folder as an export writes it: two model files and the weights file. */
function exportedFiles(parent: string): ModelFiles {
  const files = new ModelFiles(parent);
  files.place(Float32Array.from({ length: 40 }, (_, i) => i));
  files.add('forward', new Uint8Array([1, 2, 3]));
  files.add('vjp', new Uint8Array([4, 5, 6, 7]));
  files.closeWeights();
  return files;
}

const KEY = 'a'.repeat(40);

describe('export cache: entries', () => {
  it('the folder: UAP_CACHE_DIR, off when empty / off / 0, else under XDG_CACHE_HOME or ~/.cache', () => {
    expect(exportCacheRoot({ UAP_CACHE_DIR: '/x/y' })).toBe('/x/y');
    for (const off of ['', 'off', '0', ' off ']) expect(exportCacheRoot({ UAP_CACHE_DIR: off })).toBeUndefined();
    expect(exportCacheRoot({ XDG_CACHE_HOME: '/c' })).toBe(join('/c', 'uap', 'exports'));
    expect(exportCacheRoot({})).toMatch(/\.cache[/\\]uap[/\\]exports$/);
  });

  it('a cache folder another user could write to is not used; a new one is made private', () => {
    const fresh = new ExportCache(join(root, 'new'));
    expect(fresh.usable()).toBe(true);
    expect(statSync(join(root, 'new')).mode & 0o077).toBe(0);
    const open = join(root, 'shared');
    mkdirSync(open);
    chmodSync(open, 0o777);
    expect(new ExportCache(open).usable()).toBe(false);
    const entries = join(root, 'new', 'entries');
    chmodSync(entries, 0o775);
    expect(fresh.usable()).toBe(false);
  });

  it('meta.json is taken only with every field in range', () => {
    const sizes = { [WEIGHTS]: 160, 'forward.onnx': 3 };
    expect(readMeta({ ...meta(), sizes })).toEqual({ ...meta(), sizes });
    expect(readMeta({ ...meta(), sizes: { ...sizes, 'forward.opt.onnx': 9, 'forward.opt.bin': 1 } })).toBeDefined();
    const bad: unknown[] = [
      null,
      { ...meta(), sizes: { [WEIGHTS]: 160 } }, // no model
      { ...meta(), sizes: { ...sizes, '../x.onnx': 1 } },
      { ...meta(), sizes: { ...sizes, 'forward.onnx': -1 } },
      { ...meta(), sizes, probe: { forward: [1], images: [1, 2] } }, // not one logit per class
      { ...meta(), sizes, probe: { forward: [1, NaN], images: [1, 2] } },
      { ...meta(), sizes, facts: { ...meta().facts, classes: 0 } },
      { ...meta(), sizes, facts: { ...meta().facts, weightBytes: 1.5 } },
    ];
    for (const b of bad) expect(readMeta(b)).toBeUndefined();
  });

  it('kept and opened: the files come back as links in a folder of the process; the entry is marked used', () => {
    const cache = new ExportCache(root);
    const files = exportedFiles(cache.workDir);
    cache.keep(KEY, files, meta());
    files.release();
    const entry = join(root, 'entries', KEY);
    utimesSync(join(entry, 'meta.json'), new Date(1000), new Date(1000));
    const hit = cache.open(KEY)!;
    expect(hit.dir).toBe(entry);
    expect(Object.keys(hit.files.paths).sort()).toEqual(['forward', 'vjp']);
    expect([...readFileSync(hit.files.paths.vjp)]).toEqual([4, 5, 6, 7]);
    expect(statSync(join(hit.files.dir, WEIGHTS)).ino).toBe(statSync(join(entry, WEIGHTS)).ino);
    expect(hit.meta.probe).toEqual(meta().probe);
    expect(statSync(join(entry, 'meta.json')).mtimeMs).toBeGreaterThan(1000);
    // Removing the entry leaves the process's files in place.
    cache.forget(KEY);
    expect(existsSync(entry)).toBe(false);
    expect([...readFileSync(hit.files.paths.forward)]).toEqual([1, 2, 3]);
    hit.files.release();
    expect(cache.open(KEY)).toBeUndefined();
  });

  it('an entry with a file of another size, or a meta.json that is not JSON, is not opened and is removed', () => {
    const cache = new ExportCache(root);
    const entry = join(root, 'entries', KEY);
    for (const spoil of [
      () => writeFileSync(join(entry, 'vjp.onnx'), new Uint8Array([4, 5])),
      () => rmSync(join(entry, WEIGHTS)),
      () => writeFileSync(join(entry, 'meta.json'), '{"facts":'),
    ]) {
      const files = exportedFiles(cache.workDir);
      cache.keep(KEY, files, meta());
      files.release();
      spoil();
      expect(cache.open(KEY)).toBeUndefined();
      expect(existsSync(entry)).toBe(false);
    }
  });

  it("a model optimised after the entry was kept joins it, with its weights, once; not where the entry lacks another model's copy", () => {
    const cache = new ExportCache(root);
    const files = exportedFiles(cache.workDir);
    writeFileSync(join(files.dir, 'forward.opt.onnx'), 'f');
    writeFileSync(join(files.dir, 'forward.opt.bin'), 'fb');
    cache.keep(KEY, files, meta(), ['forward']);
    const entry = join(root, 'entries', KEY);
    const sizes = () => (JSON.parse(readFileSync(join(entry, 'meta.json'), 'utf8')) as ExportMeta).sizes;
    expect(Object.keys(sizes()).sort()).toEqual(['forward.onnx', 'forward.opt.bin', 'forward.opt.onnx', 'vjp.onnx', WEIGHTS].sort());
    cache.addOptimised(KEY, files, 'vjp'); // not saved yet: nothing to add
    expect(existsSync(join(entry, 'vjp.opt.onnx'))).toBe(false);
    writeFileSync(join(files.dir, 'vjp.opt.onnx'), 'vv');
    writeFileSync(join(files.dir, 'vjp.opt.bin'), 'vbin');
    cache.addOptimised(KEY, files, 'vjp');
    expect(sizes()['vjp.opt.onnx']).toBe(2);
    expect(sizes()['vjp.opt.bin']).toBe(4);
    expect(Object.keys(cache.open(KEY)!.files.paths).sort()).toEqual(['forward', 'vjp']);
    // Once: a second process's copy does not replace it.
    const second = cache.open(KEY)!.files;
    rmSync(join(second.dir, 'vjp.opt.onnx'));
    writeFileSync(join(second.dir, 'vjp.opt.onnx'), 'other');
    cache.addOptimised(KEY, second, 'vjp');
    expect(readFileSync(join(entry, 'vjp.opt.onnx'), 'utf8')).toBe('vv');
    second.release();
    // The entry's files are read-only: a process writing into its linked copy would change the entry.
    expect(statSync(join(entry, 'vjp.opt.onnx')).mode & 0o222).toBe(0);
    expect(statSync(join(entry, WEIGHTS)).mode & 0o222).toBe(0);
    // A copy that may read the weights of a model the entry has no copy of is not added.
    const other = exportedFiles(cache.workDir);
    cache.keep('b'.repeat(40), other, meta());
    writeFileSync(join(other.dir, 'images.opt.onnx'), 'i');
    writeFileSync(join(other.dir, 'vjp.opt.onnx'), 'v');
    cache.addOptimised('b'.repeat(40), other, 'vjp');
    expect(existsSync(join(root, 'entries', 'b'.repeat(40), 'vjp.opt.onnx'))).toBe(false);
    files.release();
    other.release();
  });

  it('card facts: kept and read back; out of range, not taken and removed', () => {
    const cache = new ExportCache(root);
    cache.keepCardFacts(KEY, { inputShape: [224, 224, 3], numClasses: 1000 });
    expect(cache.cardFacts(KEY)).toEqual({ inputShape: [224, 224, 3], numClasses: 1000 });
    expect(cache.cardFacts('b'.repeat(40))).toBeUndefined();
    for (const bad of [{ inputShape: [224, 224] }, { inputShape: [224, 0, 3] }, { inputShape: [1, 1, 1], numClasses: -2 }, null, '7'])
      expect(readCardFacts(bad)).toBeUndefined();
    expect(readCardFacts({ inputShape: [8, 8, 3] })).toEqual({ inputShape: [8, 8, 3] });
    writeFileSync(join(root, 'cards', `${KEY}.json`), '{"inputShape":[1,2]}');
    expect(cache.cardFacts(KEY)).toBeUndefined();
    expect(existsSync(join(root, 'cards', `${KEY}.json`))).toBe(false);
  });

  it('beyond its entry count, the least recently used entries go', () => {
    const cache = new ExportCache(root, { maxEntries: 3 });
    const keys = ['1', '2', '3'].map((c) => c.repeat(40));
    for (const [i, key] of keys.entries()) {
      const files = exportedFiles(cache.workDir);
      cache.keep(key, files, meta());
      files.release();
      utimesSync(join(root, 'entries', key, 'meta.json'), new Date(1000 * (i + 1)), new Date(1000 * (i + 1)));
    }
    // The first entry was used last: the second is the oldest.
    utimesSync(join(root, 'entries', keys[0], 'meta.json'), new Date(9000), new Date(9000));
    const files = exportedFiles(cache.workDir);
    cache.keep('4'.repeat(40), files, meta());
    files.release();
    expect(readdirSync(join(root, 'entries')).sort()).toEqual([keys[0], keys[2], '4'.repeat(40)]);
  });
});

const ortPresent = (await loadOrt()) !== null;
const backend = await initBackend();

describe.runIf(ortPresent)('export cache: loads', () => {
  const saved = process.env.UAP_CACHE_DIR;
  beforeEach(() => {
    process.env.UAP_CACHE_DIR = root;
  });
  afterEach(() => {
    if (saved === undefined) delete process.env.UAP_CACHE_DIR;
    else process.env.UAP_CACHE_DIR = saved;
  });

  const name = 'stem-op17';
  const f = readFixture(name);
  /** Loads the fixture from `file`; checks its logits and input gradients against PyTorch's; says whether it ran on a cached export. */
  async function loadAndCheck(file: string): Promise<string | undefined> {
    const model = await loadClassifier(fixtureCard(name, f, file), { backend });
    const x = tf.tensor4d(Float32Array.from(f.pixels), [2, ...f.inputShape]);
    try {
      expect(model.runsOn).toBe('onnxruntime');
      expect(maxRelativeDifference(await forwardLogits(model, batchOfTensor(x)), f.logits)).toBeLessThan(1e-4);
      const { dx } = await vjp(model, batchOfTensor(x), Float32Array.from(f.dy), 1);
      expect(maxRelativeDifference(dx, f.dx)).toBeLessThan(1e-4);
      return model.cachedExport;
    } finally {
      x.dispose();
      model.dispose();
    }
  }

  it("a second load runs on the first one's export, with PyTorch's logits and gradients", async () => {
    const file = join(root, `${name}.onnx`);
    copyFileSync(join(FIXTURE_DIR, `${name}.onnx`), file);
    expect(await loadAndCheck(file)).toBeUndefined();
    const entries = readdirSync(join(root, 'entries'));
    expect(entries).toHaveLength(1);
    // Where the workers share optimised copies, the gradient model's (saved at the first gradient) joined the entry.
    const kept = readdirSync(join(root, 'entries', entries[0]));
    expect(kept.includes('vjp.opt.onnx')).toBe(kept.includes('forward.opt.onnx'));
    expect(await loadAndCheck(file)).toBe(join(root, 'entries', entries[0]));
    // Other bytes (the same graph, another producer name) are another key: exported anew, kept beside.
    const m = onnxProto.onnx.ModelProto.decode(readFileSync(file));
    m.producerName = 'changed';
    writeFileSync(file, onnxProto.onnx.ModelProto.encode(m).finish());
    expect(await loadAndCheck(file)).toBeUndefined();
    expect(readdirSync(join(root, 'entries'))).toHaveLength(2);
  });

  it("a bare .onnx path: the second load takes the card's facts from the cache too, and a spoilt facts file is made again", async () => {
    const file = join(root, `${name}.onnx`);
    copyFileSync(join(FIXTURE_DIR, `${name}.onnx`), file);
    const load = async () => {
      const model = await loadClassifier(file, { backend, card: { preprocess: f.preprocess } });
      expect([model.inputShape, model.numClasses]).toEqual([f.inputShape, f.numClasses]);
      const cached = model.cachedExport;
      model.dispose();
      return cached;
    };
    expect(await load()).toBeUndefined();
    const [facts] = readdirSync(join(root, 'cards'));
    expect(JSON.parse(readFileSync(join(root, 'cards', facts), 'utf8'))).toEqual({ inputShape: f.inputShape, numClasses: f.numClasses });
    expect(await load()).toBeDefined();
    writeFileSync(join(root, 'cards', facts), '{}');
    expect(await load()).toBeDefined();
    expect(JSON.parse(readFileSync(join(root, 'cards', facts), 'utf8'))).toEqual({ inputShape: f.inputShape, numClasses: f.numClasses });
  });

  it('an entry whose export no longer gives its probe logits is dropped, and the model exported anew', async () => {
    const file = join(root, `${name}.onnx`);
    copyFileSync(join(FIXTURE_DIR, `${name}.onnx`), file);
    expect(await loadAndCheck(file)).toBeUndefined();
    const [entry] = readdirSync(join(root, 'entries'));
    const metaFile = join(root, 'entries', entry, 'meta.json');
    const m = JSON.parse(readFileSync(metaFile, 'utf8')) as ExportMeta;
    m.probe.forward[0] += 1;
    writeFileSync(metaFile, JSON.stringify(m));
    expect(await loadAndCheck(file)).toBeUndefined();
    // Kept again, with the right logits: the next load uses it.
    expect(await loadAndCheck(file)).toBe(join(root, 'entries', entry));
  });

  it('a model with weights in a file beside it is not kept (the key hashes the model file only)', async () => {
    const g = new OnnxGraph();
    const conv = g.op('Conv', ['input', g.floats(new Float32Array(4 * 3 * 3 * 3).fill(0.01), [4, 3, 3, 3])], { kernel_shape: [3, 3] });
    g.opMulti('Flatten', [g.op('GlobalAveragePool', [conv])], ['logits']);
    const m = onnxProto.onnx.ModelProto.decode(g.encode([['input', ['N', 3, 8, 8]]], [['logits', ['N', 4]]]));
    const w = m.graph!.initializer![0] as InstanceType<typeof onnxProto.onnx.TensorProto>;
    writeFileSync(join(root, 'tiny.bin'), Buffer.from(w.rawData!));
    w.rawData = new Uint8Array(0);
    w.dataLocation = onnxProto.onnx.TensorProto.DataLocation.EXTERNAL;
    w.externalData = [{ key: 'location', value: 'tiny.bin' }];
    const file = join(root, 'tiny.onnx');
    writeFileSync(file, onnxProto.onnx.ModelProto.encode(m).finish());
    for (let i = 0; i < 2; i++) {
      const model = await loadClassifier(file, { backend, card: { preprocess: { scale: 1 / 255 }, numClasses: 4 } });
      expect(model.runsOn).toBe('onnxruntime');
      expect(model.cachedExport).toBeUndefined();
      model.dispose();
    }
    expect(existsSync(join(root, 'entries')) ? readdirSync(join(root, 'entries')) : []).toEqual([]);
  });
});
