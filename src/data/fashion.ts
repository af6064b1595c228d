import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { encode as encodePng } from 'fast-png';
import { homedir } from 'node:os';
import { gunzipSync } from 'node:zlib';
import { UsageError } from '../errors.js';

/** Where Debian's dataset-fashion-mnist puts the four gzip idx files (FASHION_MNIST_DIR overrides). */
export const FASHION_MNIST_DIR = process.env.FASHION_MNIST_DIR ?? '/usr/share/datasets/fashion-mnist';

/** Fashion-MNIST's class names in label order, as Zalando Research publishes them (7 = Sneaker, 8 = Bag). */
export const FASHION_LABELS = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];
/** Class folder names, "NN_name" as uap's folder listing reads them (NN is the label). */
export const FASHION_FOLDERS = [
  '00_tshirt_top',
  '01_trouser',
  '02_pullover',
  '03_dress',
  '04_coat',
  '05_sandal',
  '06_shirt',
  '07_sneaker',
  '08_bag',
  '09_ankle_boot',
];

export interface FashionSplit {
  /** uint8 pixels 0..255, n * 784, row-major. */
  images: Uint8Array;
  labels: Uint8Array;
  n: number;
}

function dataFile(dir: string, name: string): string {
  const file = join(dir, `${name}-ubyte.gz`);
  if (!existsSync(file))
    throw new UsageError(
      `Fashion-MNIST file ${file} not found: install it with "apt-get install dataset-fashion-mnist" or point FASHION_MNIST_DIR at a folder with the four *-ubyte.gz files`,
    );
  return file;
}

/** Parses an idx file: big-endian magic (0x0000, type 0x08 = uint8, rank), then `rank` uint32 dims. */
export function readIdx(file: string, rank: number): { dims: number[]; data: Uint8Array } {
  const buf = gunzipSync(readFileSync(file));
  const magic = buf.readUInt32BE(0);
  if (magic !== 0x0800 + rank) throw new UsageError(`${file}: not a rank-${rank} uint8 idx file (magic 0x${magic.toString(16)})`);
  const dims = Array.from({ length: rank }, (_, i) => buf.readUInt32BE(4 + 4 * i));
  const offset = 4 + 4 * rank;
  const data = new Uint8Array(buf.buffer, buf.byteOffset + offset, buf.length - offset);
  if (data.length !== dims.reduce((a, b) => a * b, 1)) throw new UsageError(`${file}: size does not match its header`);
  return { dims, data };
}

/** The 60,000 training or 10,000 test images of Fashion-MNIST, from the idx files in `dir`. */
export function readFashionSplit(dir: string, split: 'train' | 't10k'): FashionSplit {
  const images = readIdx(dataFile(dir, `${split}-images-idx3`), 3);
  const labels = readIdx(dataFile(dir, `${split}-labels-idx1`), 1);
  if (images.dims[1] !== 28 || images.dims[2] !== 28 || images.dims[0] !== labels.dims[0])
    throw new UsageError(`Fashion-MNIST ${split}: unexpected shapes ${images.dims} / ${labels.dims}`);
  return { images: images.data, labels: labels.data, n: labels.dims[0] };
}

/** Image i of a split as an 8-bit grayscale PNG. */
export function fashionPng(split: FashionSplit, i: number): Promise<Buffer> {
  return sharp(Buffer.from(split.images.subarray(i * 784, (i + 1) * 784)), { raw: { width: 28, height: 28, channels: 1 } })
    .toColourspace('b-w')
    .png()
    .toBuffer();
}

/**
 * Writes images `indices` of a split as PNGs in class folders (NN_name/iiiiii.png) under `dir`, once:
 * built in a temporary folder and renamed into place, so an interrupted write leaves nothing half-made.
 */
export async function writeFashionFolders(split: FashionSplit, indices: ArrayLike<number>, dir: string): Promise<string> {
  if (existsSync(dir)) return dir;
  const tmp = `${dir}.partial-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  for (const f of FASHION_FOLDERS) mkdirSync(join(tmp, f), { recursive: true });
  const list = Array.from(indices);
  for (let s = 0; s < list.length; s += 256)
    await Promise.all(
      list
        .slice(s, s + 256)
        .map(async (i) =>
          writeFile(join(tmp, FASHION_FOLDERS[split.labels[i]], `${String(i).padStart(6, '0')}.png`), await fashionPng(split, i)),
        ),
    );
  renameSync(tmp, dir);
  return dir;
}

/** Where the named sets fashion:train / fashion:test are unpacked: $XDG_CACHE_HOME/uap, else ~/.cache/uap. */
export function cacheDir(): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'uap');
}

/**
 * A Fashion-MNIST split as class folders of PNGs, unpacked once from Debian's idx files into the
 * cache (60,000 training or 10,000 test images: the paper's counts, on real images). Written to a
 * temporary folder and renamed, so an interrupted unpack is redone, never half-used.
 */
export function fashionSplitFolder(split: 'train' | 'test', say?: (m: string) => void): string {
  // 'v2': the folders of earlier releases named classes 7 and 8 the wrong way round (their images and
  // labels were right); a fresh unpack gives the true names.
  const dir = join(cacheDir(), 'fashion-mnist', 'v2', split);
  if (existsSync(dir)) return dir;
  const data = readFashionSplit(FASHION_MNIST_DIR, split === 'train' ? 'train' : 't10k');
  say?.(`unpacking the ${data.n} Fashion-MNIST ${split} images from ${FASHION_MNIST_DIR} into ${dir} (once)`);
  const tmp = `${dir}.partial-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  for (const f of FASHION_FOLDERS) mkdirSync(join(tmp, f), { recursive: true });
  for (let i = 0; i < data.n; i++) {
    const png = encodePng({ width: 28, height: 28, data: data.images.subarray(i * 784, (i + 1) * 784), channels: 1, depth: 8 });
    writeFileSync(join(tmp, FASHION_FOLDERS[data.labels[i]], `${String(i).padStart(6, '0')}.png`), png);
  }
  mkdirSync(join(cacheDir(), 'fashion-mnist', 'v2'), { recursive: true });
  renameSync(tmp, dir);
  return dir;
}
