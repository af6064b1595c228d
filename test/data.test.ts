import { describe, it, expect, beforeAll } from 'vitest';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, readdirSync, existsSync } from 'node:fs';
import { FASHION_FOLDERS, FASHION_LABELS, FASHION_MNIST_DIR, readFashionSplit } from '../src/data/fashion.js';
import { EMBEDDED_DIR } from '../src/paths.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import * as tf from '../src/tf.js';
import { listDataset, loadImages } from '../src/data/dataset.js';
import { decodeImage } from '../src/data/decode.js';
import { readNpy, writeNpy, fortranToC } from '../src/io/npy.js';
import { UsageError } from '../src/errors.js';

beforeAll(async () => {
  tf.enableProdMode();
  await tf.setBackend('cpu');
});

const tmp = () => mkdtempSync(join(tmpdir(), 'uap-data-'));
const solid = (w: number, h: number, channels: 1 | 3 | 4, value: number) =>
  sharp(Buffer.alloc(w * h * channels, value), { raw: { width: w, height: h, channels } });

describe('decoding', () => {
  it('resizes the short side and centre-crops to the model input', async () => {
    const dir = tmp();
    // 40x20: left half black, right half white; a centre crop of 10x10 after resizing to 20x10 -> half/half.
    const px = Buffer.alloc(40 * 20 * 3);
    for (let y = 0; y < 20; y++) for (let x = 20; x < 40; x++) px.fill(255, (y * 40 + x) * 3, (y * 40 + x) * 3 + 3);
    await sharp(px, { raw: { width: 40, height: 20, channels: 3 } })
      .png()
      .toFile(join(dir, 'a.png'));
    const out = await decodeImage(join(dir, 'a.png'), 10, 10, 3);
    expect(out.length).toBe(300);
    expect(out[0]).toBeLessThan(30); // left column dark
    expect(out[9 * 3]).toBeGreaterThan(225); // right column bright
  });
  it('converts grayscale, RGBA and CMYK to RGB, and RGB to grayscale for 1-channel models', async () => {
    const dir = tmp();
    await solid(8, 8, 1, 100).png().toFile(join(dir, 'g.png'));
    await solid(8, 8, 4, 200).png().toFile(join(dir, 'rgba.png'));
    await solid(8, 8, 3, 50).toColourspace('cmyk').jpeg().toFile(join(dir, 'cmyk.jpg'));
    const g = await decodeImage(join(dir, 'g.png'), 4, 4, 3);
    expect(g.length).toBe(48);
    expect(new Set(g)).toEqual(new Set([100]));
    const rgba = await decodeImage(join(dir, 'rgba.png'), 4, 4, 3);
    expect(rgba.length).toBe(48);
    const cmyk = await decodeImage(join(dir, 'cmyk.jpg'), 4, 4, 3);
    expect(cmyk.length).toBe(48);
    const gray = await decodeImage(join(dir, 'rgba.png'), 4, 4, 1);
    expect(gray.length).toBe(16);
  });
});

describe('datasets', () => {
  it('reads labels from NN_name class folders', async () => {
    const dir = tmp();
    for (const [folder, v] of [
      ['00_zero', 10],
      ['03_three', 20],
    ] as const) {
      mkdirSync(join(dir, folder));
      await solid(5, 5, 3, v)
        .png()
        .toFile(join(dir, folder, 'x.png'));
      await solid(5, 5, 3, v)
        .png()
        .toFile(join(dir, folder, 'y.png'));
    }
    const items = listDataset(dir);
    expect(items.map((i) => i.label)).toEqual([0, 0, 3, 3]);
    const { set } = await loadImages(items, [5, 5, 3]);
    expect(Array.from(set.labels!)).toEqual([0, 0, 3, 3]);
    expect(set.pixels[0]).toBe(10);
    expect(set.batch([2]).shape).toEqual([1, 5, 5, 3]);
  });
  it('reads a labels file ("path, index"), wnid file names, and a limit', async () => {
    const dir = tmp();
    await solid(5, 5, 3, 1).png().toFile(join(dir, 'n01443537_goldfish.png'));
    await solid(5, 5, 3, 1).png().toFile(join(dir, 'n01440764_tench.png'));
    writeFileSync(join(dir, 'list.txt'), './n01443537_goldfish.png, 1\n./n01440764_tench.png 0\n');
    expect(listDataset(dir, { labelsFile: join(dir, 'list.txt') }).map((i) => i.label)).toEqual([1, 0]);
    const wnids = ['n01440764', 'n01443537'];
    expect(listDataset(dir, { wnids }).map((i) => i.label)).toEqual([0, 1]);
    expect(listDataset(dir, { wnids, limit: 1 }).length).toBe(1);
  });
  it('skips undecodable files with a count, or stops on them with strict', async () => {
    const dir = tmp();
    await solid(5, 5, 3, 1).png().toFile(join(dir, 'a.png'));
    writeFileSync(join(dir, 'broken.jpg'), 'not a jpeg');
    const items = listDataset(dir);
    const { set, skipped } = await loadImages(items, [5, 5, 3]);
    expect(set.size).toBe(1);
    expect(skipped.map((s) => s.path)).toEqual([join(dir, 'broken.jpg')]);
    await expect(loadImages(items, [5, 5, 3], { strict: true })).rejects.toThrow(/broken\.jpg: cannot be decoded/);
  });
  it('names the folder when it is missing or empty, or a label file line is bad', async () => {
    const dir = tmp();
    expect(() => listDataset(join(dir, 'nope'))).toThrow(/folder not found/);
    expect(() => listDataset(dir)).toThrow(UsageError);
    expect(() => listDataset(dir)).toThrow(/no images found/);
    writeFileSync(join(dir, 'bad.txt'), 'a.png\n');
    expect(() => listDataset(dir, { labelsFile: join(dir, 'bad.txt') })).toThrow(/line 1 is not "path, index"/);
    // A class folder named "NN_name" beside one that says no class: refused, naming it (all unnamed is an ImageFolder tree).
    for (const f of ['00_tshirt', 'cats']) {
      mkdirSync(join(dir, f));
      writeFileSync(join(dir, f, 'a.png'), '');
    }
    expect(() => listDataset(dir)).toThrow(/class folder "cats"/);
  });
});

describe('.npy files', () => {
  it('round-trips float32 HWC arrays', async () => {
    const f = join(tmp(), 'v.npy');
    const data = Float32Array.from({ length: 2 * 3 * 3 }, (_, i) => i - 7.5);
    writeNpy(f, { data, shape: [2, 3, 3] });
    const back = readNpy(f);
    expect(back.shape).toEqual([2, 3, 3]);
    expect(Array.from(back.data)).toEqual(Array.from(data));
  });
  it("reads Fortran-order arrays (as the paper authors' files are) into C order", () => {
    // A 2x3 array [[0, 1, 2], [3, 4, 5]] stored column-major is 0 3 1 4 2 5.
    expect(Array.from(fortranToC(Float32Array.from([0, 3, 1, 4, 2, 5]), [2, 3]))).toEqual([0, 1, 2, 3, 4, 5]);
    const f = join(tmp(), 'f.npy');
    writeNpy(f, { data: Float32Array.from([0, 3, 1, 4, 2, 5]), shape: [2, 3] });
    const text = readFileSync(f).toString('latin1').replace("'fortran_order': False", "'fortran_order': True ");
    writeFileSync(f, Buffer.from(text, 'latin1'));
    expect(Array.from(readNpy(f).data)).toEqual([0, 1, 2, 3, 4, 5]);
  });
  it('rejects a file that is not .npy', async () => {
    const f = join(tmp(), 'x.npy');
    writeFileSync(f, 'hello');
    expect(() => readNpy(f)).toThrow(/not a \.npy file/);
    expect(() => readNpy(join(tmp(), 'missing.npy'))).toThrow(/not found/);
  });
});

describe('the embedded Fashion-MNIST model and images: the official class names', () => {
  // Zalando Research's README (github.com/zalandoresearch/fashion-mnist, "Labels"): the order every
  // Fashion-MNIST tool uses.
  const OFFICIAL = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];
  const slug = (name: string) =>
    name
      .toLowerCase()
      .replace(/-/g, '')
      .replace(/[^a-z]+/g, '_');

  it('labels.txt, the library constant and the class folders name label i as the official list does', () => {
    expect(FASHION_LABELS).toEqual(OFFICIAL);
    expect(
      readFileSync(join(EMBEDDED_DIR, 'model', 'labels.txt'), 'utf8')
        .trim()
        .split('\n'),
    ).toEqual(OFFICIAL);
    expect(FASHION_FOLDERS).toEqual(OFFICIAL.map((n, i) => `${String(i).padStart(2, '0')}_${slug(n)}`));
    for (const split of ['craft', 'val']) expect(readdirSync(join(EMBEDDED_DIR, 'images', split)).sort()).toEqual(FASHION_FOLDERS);
  });

  it.skipIf(!existsSync(join(FASHION_MNIST_DIR, 't10k-labels-idx1-ubyte.gz')))(
    'every embedded image is the test-set image its file names, with the label its folder names',
    async () => {
      const test = readFashionSplit(FASHION_MNIST_DIR, 't10k');
      for (const split of ['craft', 'val'])
        for (const [label, folder] of FASHION_FOLDERS.entries())
          for (const file of readdirSync(join(EMBEDDED_DIR, 'images', split, folder))) {
            const i = Number(file.slice(0, 6));
            expect(test.labels[i], `${split}/${folder}/${file}`).toBe(label);
            const { data } = await sharp(join(EMBEDDED_DIR, 'images', split, folder, file))
              .extractChannel(0)
              .raw()
              .toBuffer({ resolveWithObject: true });
            expect(Buffer.compare(data, Buffer.from(test.images.subarray(i * 784, (i + 1) * 784))), `${split}/${folder}/${file}`).toBe(0);
          }
    },
  );
});

describe('the layouts users have', () => {
  it("a PyTorch ImageFolder tree (cat/, dog/): classes numbered in sorted folder order as torchvision's ImageFolder does, with a warning", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'uap-imagefolder-'));
    const png = await sharp({ create: { width: 28, height: 28, channels: 3, background: '#808080' } })
      .png()
      .toBuffer();
    for (const c of ['dog', 'cat', 'zebra']) {
      mkdirSync(join(dir, c));
      writeFileSync(join(dir, c, 'a.png'), png);
    }
    const warnings: string[] = [];
    const items = listDataset(dir, { labelNames: ['T-shirt/top', 'Trouser'], warn: (m) => warnings.push(m) });
    expect(items.map((i) => [i.path.split('/').slice(-2)[0], i.label])).toEqual([
      ['cat', 0],
      ['dog', 1],
      ['zebra', 2],
    ]);
    expect(warnings.join('\n')).toMatch(
      /class folders numbered in sorted order as torchvision's ImageFolder does \(cat = 0, dog = 1, zebra = 2\)/,
    );
    // Some folders named by class and some not is a mistake, not a layout: refused, naming the folder.
    mkdirSync(join(dir, '00_tshirt'));
    writeFileSync(join(dir, '00_tshirt', 'a.png'), png);
    expect(() => listDataset(dir, {})).toThrow(/class folder "cat" is not "NN_name", a wnid, or a label name of the model/);
  });
});
