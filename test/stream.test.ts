import { describe, it, expect, beforeAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { crc32 as zlibCrc32, deflateSync } from 'node:zlib';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import * as tf from '../src/tf.js';
import { listDataset, loadImages, openImages } from '../src/data/dataset.js';
import { tarMembers, readMember, readSpans, ShardReader } from '../src/data/tar.js';
import { predictMany, predictSet, evaluatePerturbation } from '../src/evaluation/scoring.js';
import { evaluateWithNoise } from '../src/jobs/scoring.js';
import { randomBaseline } from '../src/evaluation/noiseScore.js';
import { UsageError } from '../src/errors.js';
import { decodeImage, decodeWithSharp, plainPng } from '../src/data/decode.js';
import { decodeOffThread } from '../src/data/decodeWorker.js';
import { Rng } from '../src/math/random.js';
import { tinyNet, uapCli } from './helpers.js';
import { fashionSplitFolder, FASHION_MNIST_DIR } from '../src/data/fashion.js';
import { existsSync } from 'node:fs';

beforeAll(async () => {
  tf.enableProdMode();
  await tf.setBackend('cpu');
});

const tmp = () => mkdtempSync(join(tmpdir(), 'uap-stream-'));
/** A 6x6 PNG whose pixels are all `value` (so a decoded image says which file it came from). */
const png = (value: number) =>
  sharp(Buffer.alloc(6 * 6 * 3, value), { raw: { width: 6, height: 6, channels: 3 } })
    .png()
    .toBuffer();
/** GNU tar, the reference writer: `tar cf out -C dir names...` in the given format. */
const tar = (out: string, dir: string, names: string[], format = 'gnu') =>
  execFileSync('tar', ['cf', out, `--format=${format}`, '-C', dir, ...names]);

/** Class folders 00_a, 01_b with two images each, and one long-named image (over 100 characters). */
async function classTree(): Promise<{ dir: string; long: string }> {
  const dir = tmp();
  for (const [k, folder] of ['00_a', '01_b'].entries()) {
    mkdirSync(join(dir, folder));
    for (const f of ['x.png', 'y.png']) writeFileSync(join(dir, folder, f), await png(10 + 40 * k + (f === 'y.png' ? 1 : 0)));
  }
  const long = `01_b/${'z'.repeat(120)}.png`;
  writeFileSync(join(dir, long), await png(99));
  return { dir, long };
}

describe('tar shards', () => {
  it('indexes members as GNU tar writes them (gnu, pax and ustar formats, long names), and reads each one back byte for byte', async () => {
    const { dir, long } = await classTree();
    for (const format of ['gnu', 'pax']) {
      const file = join(tmp(), `s-${format}.tar`);
      tar(file, dir, ['00_a', '01_b'], format);
      const members = tarMembers(file);
      expect(members.map((m) => m.name).sort()).toEqual(['00_a/x.png', '00_a/y.png', '01_b/x.png', '01_b/y.png', long].sort());
      for (const m of members) expect((await readMember(file, m)).equals(readFileSync(join(dir, m.name)))).toBe(true);
    }
    // ustar keeps names up to 255 characters in its prefix field.
    const short = join(tmp(), 'u.tar');
    tar(short, dir, ['00_a'], 'ustar');
    expect(
      tarMembers(short)
        .map((m) => m.name)
        .sort(),
    ).toEqual(['00_a/x.png', '00_a/y.png']);
  });

  it('plans reads of members in few spans: side by side in one shard, one read; scattered, one per member', async () => {
    const m = (name: string, offset: number, size: number) => ({ name, offset, size });
    const [a, b, c] = [m('a', 512, 100), m('b', 1536, 90), m('c', 5e7, 80)];
    expect(
      readSpans([
        { file: 's0', member: a },
        { file: 's0', member: b },
        { file: 's1', member: c },
      ]),
    ).toEqual([
      { file: 's0', start: 512, length: 1114, members: [a, b] },
      { file: 's1', start: 5e7, length: 80, members: [c] },
    ]);
    // 50 MB apart: reading the span between would read far more than the members.
    expect(
      readSpans([
        { file: 's0', member: a },
        { file: 's0', member: c },
      ]).map((s) => [s.start, s.length]),
    ).toEqual([
      [512, 100],
      [5e7, 80],
    ]);
    // Read back through a shard: the same bytes as reading each member alone.
    const { dir } = await classTree();
    const file = join(tmp(), 'set.tar');
    tar(file, dir, ['00_a', '01_b']);
    const members = tarMembers(file);
    const reader = new ShardReader();
    const read = await reader.readMany(members.map((member) => ({ file, member })));
    await reader.close();
    for (const mm of members) expect(read.get(mm)?.equals(await readMember(file, mm))).toBe(true);
  });

  it('lists class folders inside a tar with their labels, in archive order, decoded like the same folder', async () => {
    const { dir } = await classTree();
    const file = join(tmp(), 'set.tar');
    tar(file, dir, ['00_a', '01_b']);
    const fromTar = listDataset(file);
    expect(fromTar.map((i) => i.label).sort()).toEqual([0, 0, 1, 1, 1]);
    expect(fromTar.every((i) => i.path === file && i.member)).toBe(true);
    const a = (await loadImages(fromTar, [6, 6, 3])).set;
    // Same images, same labels as listing the folder (orders may differ: compare as sorted pairs).
    const b = (await loadImages(listDataset(dir), [6, 6, 3])).set;
    const pairs = (s: typeof a) => s.items.map((it, k) => `${it.label}:${s.pixels[k * 108]}`).sort();
    expect(pairs(a)).toEqual(pairs(b));
  });

  it('reads webdataset shards (key.png + key.cls) through a {0..1} pattern or a folder of shards, and labels files of member names', async () => {
    const src = tmp();
    const shards = tmp();
    for (let s = 0; s < 2; s++) {
      const names: string[] = [];
      for (let i = 0; i < 3; i++) {
        const key = `s${s}_${i}`;
        writeFileSync(join(src, `${key}.png`), await png(s * 3 + i));
        writeFileSync(join(src, `${key}.cls`), `${(s * 3 + i) % 4}\n`);
        names.push(`${key}.png`, `${key}.cls`);
      }
      tar(join(shards, `shard-${s}.tar`), src, names);
    }
    const byPattern = listDataset(join(shards, 'shard-{0..1}.tar'));
    expect(byPattern.map((i) => i.label)).toEqual([0, 1, 2, 3, 0, 1]);
    expect(listDataset(shards).map((i) => i.member!.name)).toEqual(byPattern.map((i) => i.member!.name));
    const set = (await loadImages(byPattern, [6, 6, 3])).set;
    expect(Array.from({ length: 6 }, (_, k) => set.pixels[k * 108])).toEqual([0, 1, 2, 3, 4, 5]);
    writeFileSync(join(src, 'labels.txt'), 's0_1.png, 7\ns1_2.png 5\n');
    const warnings: string[] = [];
    const listed = listDataset(join(shards, 'shard-{0..1}.tar'), { labelsFile: join(src, 'labels.txt'), warn: (m) => warnings.push(m) });
    expect(listed.map((i) => [i.member!.name, i.label])).toEqual([
      ['s0_1.png', 7],
      ['s1_2.png', 5],
    ]);
    expect(warnings.join()).toMatch(/4 images are not in the labels file/);
  });

  it('refuses a file that is not a tar, a truncated tar and a missing shard, naming the file', async () => {
    const dir = tmp();
    writeFileSync(join(dir, 'fake.tar'), Buffer.alloc(2048, 7));
    expect(() => listDataset(join(dir, 'fake.tar'))).toThrow(UsageError);
    expect(() => listDataset(join(dir, 'fake.tar'))).toThrow(/fake\.tar: not a tar archive/);
    const { dir: tree } = await classTree();
    const whole = join(dir, 'whole.tar');
    tar(whole, tree, ['00_a']);
    writeFileSync(join(dir, 'cut.tar'), readFileSync(whole).subarray(0, 700));
    expect(() => listDataset(join(dir, 'cut.tar'))).toThrow(/cut\.tar: truncated/);
    expect(() => listDataset(join(dir, 'shard-{0..2}.tar'))).toThrow(/tar shard .*shard-0\.tar not found/);
  });
});

describe('decoding small PNGs', () => {
  it('gives exactly the pixels sharp gives, for gray, gray+alpha, RGB and RGBA PNGs of the model size', async () => {
    const rng = new Rng(3);
    for (const channels of [1, 2, 3, 4] as const) {
      const raw = Buffer.from(Array.from({ length: 28 * 28 * channels }, () => Math.floor(rng.next() * 256)));
      const bytes = await sharp(raw, { raw: { width: 28, height: 28, channels } })
        .png()
        .toBuffer();
      expect(plainPng(bytes, 28, 28, 3)).toBeDefined(); // the JavaScript path, not sharp
      for (const c of [1, 3] as const)
        expect(Buffer.from(await decodeImage(bytes, 28, 28, c)).equals(Buffer.from(await decodeWithSharp(bytes, 28, 28, c)))).toBe(true);
    }
    // Other sizes, palettes and 16-bit go to sharp: still exact, and a corrupt PNG is still an error.
    const big = await sharp(Buffer.alloc(40 * 30 * 3, 90), { raw: { width: 40, height: 30, channels: 3 } })
      .png({ palette: true })
      .toBuffer();
    expect(plainPng(big, 28, 28, 3)).toBeUndefined();
    expect(Buffer.from(await decodeImage(big, 28, 28, 3)).equals(Buffer.from(await decodeWithSharp(big, 28, 28, 3)))).toBe(true);
    const good = await png(5);
    await expect(decodeImage(good.subarray(0, 40), 6, 6, 3)).rejects.toThrow();
  });

  /** A PNG written by hand: row y filtered with filter type filters[y % 5] (PNG spec, section 9), IDAT split in `parts`. */
  function handPng(raw: Uint8Array, w: number, h: number, channels: number, filters: number[], parts = 1): Buffer {
    const stride = w * channels;
    const filtered = Buffer.alloc(h * (stride + 1));
    const px = (y: number, i: number) => (y < 0 || i < 0 ? 0 : raw[y * stride + i]);
    for (let y = 0; y < h; y++) {
      const f = filters[y % filters.length];
      filtered[y * (stride + 1)] = f;
      for (let i = 0; i < stride; i++) {
        const [a, b, c] = [px(y, i - channels), px(y - 1, i), px(y - 1, i - channels)];
        const p = a + b - c;
        const paeth =
          Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c) ? a : Math.abs(p - b) <= Math.abs(p - c) ? b : c;
        const pred = [0, a, b, Math.floor((a + b) / 2), paeth][f] ?? 0; // 5 and above: no such filter
        filtered[y * (stride + 1) + 1 + i] = (px(y, i) - pred + 256) % 256;
      }
    }
    const chunk = (type: string, data: Buffer) => {
      const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
      const out = Buffer.alloc(data.length + 12);
      out.writeUInt32BE(data.length, 0);
      body.copy(out, 4);
      out.writeUInt32BE(zlibCrc32(body), data.length + 8);
      return out;
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(w, 0);
    ihdr.writeUInt32BE(h, 4);
    ihdr[8] = 8;
    ihdr[9] = { 1: 0, 2: 4, 3: 2, 4: 6 }[channels]!;
    const z = deflateSync(filtered);
    const cut = Math.ceil(z.length / parts);
    const idat = Array.from({ length: parts }, (_, k) => chunk('IDAT', z.subarray(k * cut, (k + 1) * cut)));
    return Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      chunk('IHDR', ihdr),
      ...idat,
      chunk('IEND', Buffer.alloc(0)),
    ]);
  }

  it('undoes every PNG row filter (none, sub, up, average, Paeth) and joins split image data exactly as sharp does; a bad checksum goes to sharp, which refuses it', async () => {
    const rng = new Rng(11);
    for (const channels of [1, 2, 3, 4]) {
      const raw = Uint8Array.from({ length: 28 * 28 * channels }, () => Math.floor(rng.next() * 256));
      for (const [filters, parts] of [
        [[0, 1, 2, 3, 4], 1],
        [[4, 3, 2, 1, 0], 3],
        [[4], 2],
        [[3], 1],
      ] as [number[], number][]) {
        const bytes = handPng(raw, 28, 28, channels, filters, parts);
        expect(plainPng(bytes, 28, 28, 3)).toBeDefined();
        for (const c of [1, 3] as const) {
          const sharpPixels = Buffer.from(await decodeWithSharp(bytes, 28, 28, c));
          expect(Buffer.from(await decodeImage(bytes, 28, 28, c)).equals(sharpPixels)).toBe(true);
        }
        if (channels === 3) expect(Buffer.from(plainPng(bytes, 28, 28, 3)!).equals(Buffer.from(raw))).toBe(true);
      }
    }
    const bytes = handPng(
      Uint8Array.from({ length: 28 * 28 }, (_, i) => i % 251),
      28,
      28,
      1,
      [1, 4],
    );
    bytes[50] ^= 1; // inside the image data: its chunk's CRC no longer matches
    expect(plainPng(bytes, 28, 28, 1)).toBeUndefined();
    await expect(decodeImage(bytes, 28, 28, 1)).rejects.toThrow();
    const badFilter = handPng(new Uint8Array(28 * 28), 28, 28, 1, [0, 5]);
    expect(plainPng(badFilter, 28, 28, 1)).toBeUndefined();
    await expect(decodeImage(badFilter, 28, 28, 1)).rejects.toThrow();
  });
  it('reads and decodes a batch of them on the decoding thread exactly as here, and hands back the bytes of what it cannot decode (a bad checksum, a JPEG) for sharp, which skips it with its reason', async () => {
    const rng = new Rng(5);
    const raws = Array.from({ length: 6 }, () => Uint8Array.from({ length: 28 * 28 * 3 }, () => Math.floor(rng.next() * 256)));
    const pngs = raws.map((raw, k) => handPng(raw, 28, 28, 3, [k % 5, 4, 1]));
    const corrupt = Buffer.from(pngs[3]);
    corrupt[60] ^= 1;
    const jpeg = await sharp(Buffer.from(raws[4]), { raw: { width: 28, height: 28, channels: 3 } })
      .jpeg()
      .toBuffer();
    const files = tmp();
    const batch = [pngs[0], corrupt, jpeg, pngs[5]].map((b, k) => (writeFileSync(join(files, `${k}`), b), { path: join(files, `${k}`) }));
    const off = decodeOffThread([...batch, { path: join(files, 'missing') }], [28, 28, 3]);
    expect(off, 'the decoding thread loads the built batch module: run npm run build:lib first').toBeDefined();
    const got = await off!;
    expect([0, 1, 2, 3, 4].map((k) => got.decoded(k))).toEqual([true, false, false, true, false]);
    expect(Buffer.from(got.pixels.subarray(0, 2352)).equals(Buffer.from(raws[0]))).toBe(true);
    expect(Buffer.from(got.pixels.subarray(3 * 2352, 4 * 2352)).equals(Buffer.from(raws[5]))).toBe(true);
    expect([got.bytes(1)?.equals(corrupt), got.bytes(2)?.equals(jpeg), got.bytes(4)]).toEqual([true, true, undefined]);
    // Through a streamed set of tar members: the same pixels as sharp's, and the corrupt one skipped.
    const dir = tmp();
    const names = pngs.map((_, k) => `${k}.png`);
    pngs.forEach((b, k) => writeFileSync(join(dir, names[k]), k === 3 ? corrupt : b));
    writeFileSync(join(dir, '4.png'), jpeg); // a JPEG named .png: sharp decodes it by its content
    tar(join(dir, 's.tar'), dir, names);
    const stream = openImages(listDataset(join(dir, 's.tar')), [28, 28, 3]);
    const seen: Buffer[] = [];
    for await (const b of stream.batches(4))
      for (let k = 0; k < b.items.length; k++) seen.push(Buffer.from(b.pixels.subarray(k * 2352, (k + 1) * 2352)));
    const expected = await Promise.all(
      [0, 1, 2, 4, 5].map(async (k) => Buffer.from(await decodeWithSharp(k === 4 ? jpeg : pngs[k], 28, 28, 3))),
    );
    expect(seen.map((b, k) => b.equals(expected[k]))).toEqual([true, true, true, true, true]);
    expect(stream.skipped.map((s) => s.path)).toEqual([`${join(dir, 's.tar')}:3.png`]);
  });
});

describe('streamed image sets', () => {
  async function folder(n: number): Promise<string> {
    const dir = tmp();
    for (let i = 0; i < n; i++) writeFileSync(join(dir, `${String(i).padStart(3, '0')}.png`), await png(i));
    return dir;
  }
  const firstPixels = async (batches: AsyncIterable<{ start: number; pixels: Uint8Array; items: unknown[] }>) => {
    const out: number[] = [];
    for await (const b of batches) {
      expect(b.start).toBe(out.length);
      for (let k = 0; k < b.items.length; k++) out.push(b.pixels[k * 108]);
    }
    return out;
  };

  it('yields the images of the in-memory set, in order, batch by batch, with any batch size', async () => {
    const items = listDataset(await folder(11));
    const memory = (await loadImages(items, [6, 6, 3])).set;
    for (const size of [1, 4, 32]) {
      const stream = openImages(items, [6, 6, 3], { prefetch: 1, concurrency: 3 });
      expect(await firstPixels(stream.batches(size))).toEqual(await firstPixels(memory.batches(size)));
    }
    const stream = openImages(items, [6, 6, 3]);
    const picked = await stream.pick([9, 2]);
    expect([picked[0], picked[108]]).toEqual([9, 2]);
  });

  it('leaves out a file that does not decode, says it once, and keeps positions the same on every later pass', async () => {
    const dir = await folder(6);
    writeFileSync(join(dir, '002.png'), 'broken');
    const told: string[] = [];
    const stream = openImages(listDataset(dir), [6, 6, 3], { onSkip: (i) => told.push(i.path) });
    expect(await firstPixels(stream.batches(4))).toEqual([0, 1, 3, 4, 5]);
    expect(await firstPixels(stream.batches(4))).toEqual([0, 1, 3, 4, 5]);
    expect(told).toEqual([join(dir, '002.png')]);
    expect(stream.size).toBe(5);
    expect(stream.skipped.map((s) => s.path)).toEqual([join(dir, '002.png')]);
    const strict = openImages(listDataset(dir), [6, 6, 3], { strict: true });
    await expect(firstPixels(strict.batches(4))).rejects.toThrow(/002\.png: cannot be decoded/);
  });

  it('keeps nothing from a set read once, then keeps decoded images from the second pass up to its cache size, and no more', async () => {
    const dir = await folder(8);
    const per = 6 * 6 * 3;
    const cached = openImages(listDataset(dir), [6, 6, 3], { cacheBytes: 5 * per });
    expect(await firstPixels(cached.batches(3))).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    const files = Object.fromEntries(readdirSync(dir).map((f) => [f, readFileSync(join(dir, f))]));
    // A first pass cached nothing: with the files broken, the second pass decodes none of them.
    const once = openImages(listDataset(dir), [6, 6, 3], { cacheBytes: 5 * per });
    expect(await firstPixels(once.batches(3))).toHaveLength(8);
    for (const f of Object.keys(files)) writeFileSync(join(dir, f), 'broken');
    await expect(firstPixels(once.batches(3))).rejects.toThrow(/none of the 8 images could be decoded/);
    for (const [f, bytes] of Object.entries(files)) writeFileSync(join(dir, f), bytes);
    // The second pass fills the cache; with the files gone, the third finds the first five there and loses the rest.
    expect(await firstPixels(cached.batches(3))).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    rmSync(dir, { recursive: true });
    expect(await firstPixels(cached.batches(3))).toEqual([0, 1, 2, 3, 4]);
    expect(cached.skipped.length).toBe(3);
  });

  it('scores every perturbation in one pass exactly as separate passes do, on a stream as in memory', async () => {
    const items = listDataset(await folder(20));
    const model = tinyNet([6, 6, 3], 4, 3);
    const memory = (await loadImages(items, [6, 6, 3])).set;
    const stream = openImages(items, [6, 6, 3], { cacheBytes: 0 });
    const v = tf.randomUniform([6, 6, 3], -60, 60, 'float32', 5) as tf.Tensor3D;
    const separate = [await predictSet(model, memory, null, 8), await predictSet(model, memory, v, 8)];
    const together = await predictMany(model, stream, [null, v], 8);
    expect(together.map((p) => Array.from(p))).toEqual(separate.map((p) => Array.from(p)));
    // evaluateWithNoise = evaluatePerturbation + randomBaseline at each radius, in one pass.
    const radii = [
      { norm: 'inf' as const, xi: 40 },
      { norm: 2 as const, xi: 300 },
    ];
    const one = await evaluateWithNoise(model, stream, v, radii, 2, { batchSize: 8 });
    const ev = await evaluatePerturbation(model, memory, v);
    expect(one.ev.foolingRate).toBe(ev.foolingRate);
    for (const [k, r] of radii.entries())
      expect(one.baselines[k]).toEqual(await randomBaseline(model, memory, r.norm, r.xi, 2, ev.cleanPred));
    v.dispose();
  });
});

const hasFashion = existsSync(join(FASHION_MNIST_DIR, 't10k-images-idx3-ubyte.gz'));
if (!hasFashion)
  console.warn(`SKIPPED the paper-scale Fashion-MNIST tests: ${FASHION_MNIST_DIR} not found (.ci/run installs dataset-fashion-mnist)`);

describe.skipIf(!hasFashion)("Fashion-MNIST in the paper's counts", () => {
  it('unpacks the 10,000 test images once, as class folders of 1,000 each, pixel for pixel', async () => {
    process.env.XDG_CACHE_HOME = tmp();
    const dir = fashionSplitFolder('test');
    const items = listDataset(dir);
    expect(items.length).toBe(10000);
    for (let c = 0; c < 10; c++) expect(items.filter((i) => i.label === c).length).toBe(1000);
    expect(fashionSplitFolder('test')).toBe(dir); // the second time: the same folder, nothing redone
    const { readFashionSplit } = await import('../src/data/fashion.js');
    const raw = readFashionSplit(FASHION_MNIST_DIR, 't10k');
    const first = items.find((i) => i.path.endsWith('000000.png'))!;
    const { set } = await loadImages([first], [28, 28, 1]);
    expect(Buffer.from(set.pixels).equals(Buffer.from(raw.images.subarray(0, 784)))).toBe(true);
  });

  it('uap reproduce --paper-scale crafts on a sample of the training images and scores on the test images', async () => {
    const out = tmp();
    const r = await uapCli(['reproduce', '--models', 'fashion', '--paper-scale', '--quick', '--max-passes', '1', '-o', out], {
      env: { XDG_CACHE_HOME: tmp() },
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/X = 1000 images, validation = 2000 images/);
    const config = JSON.parse(readFileSync(join(out, 'fashion-linf', 'config.json'), 'utf8'));
    expect(config.data).toMatch(/fashion-mnist.v2.train$/);
    expect(config.val).toBe('fashion:test');
    // A seeded sample of X covers the classes (the first 1000 files in order would be one class).
    const lines = readFileSync(join(out, 'fashion-linf', 'predictions.csv'), 'utf8')
      .trim()
      .split('\n')
      .slice(1);
    expect(new Set(lines.map((l) => l.split(',')[1])).size).toBe(10);
  }, 300_000);
});
