import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { decode as decodePngJs } from 'fast-png';

/**
 * Decodes one image (a file, or its bytes) to uint8 HWC pixels of exactly [h, w, c]: the short side is
 * resized to fit, then the centre is cropped (sharp's `cover`). Grayscale, RGBA, CMYK and palette images
 * become RGB (or grayscale when c is 1); alpha is dropped.
 */
export async function decodeImage(file: string | Buffer, h: number, w: number, c: 1 | 3): Promise<Uint8Array> {
  const bytes = typeof file === 'string' ? await readFile(file) : file;
  return plainPng(bytes, h, w, c) ?? decodeWithSharp(bytes, h, w, c);
}

/** Decoding with sharp (libvips), whatever the format. */
export async function decodeWithSharp(bytes: Buffer, h: number, w: number, c: 1 | 3): Promise<Uint8Array> {
  let img = sharp(bytes, { failOn: 'error' }).rotate().resize({ width: w, height: h, fit: 'cover', position: 'centre' });
  img = c === 1 ? img.grayscale() : img.toColourspace('srgb');
  const { data, info } = await img.removeAlpha().raw().toBuffer({ resolveWithObject: true });
  if (info.channels === c) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  // Some inputs keep one channel after srgb conversion: expand gray -> RGB by hand.
  const out = new Uint8Array(h * w * c);
  for (let i = 0; i < h * w; i++) for (let k = 0; k < c; k++) out[i * c + k] = data[i * info.channels + Math.min(k, info.channels - 1)];
  return out;
}

/** PNG chunks that change nothing sharp's decode above would do with the pixels. */
const NEUTRAL_CHUNKS = new Set(['IHDR', 'IDAT', 'IEND', 'tEXt', 'zTXt', 'iTXt', 'pHYs', 'tIME', 'sRGB', 'bKGD']);

/**
 * A PNG already of the model's size, 8-bit, not palette, without colour profile or orientation:
 * decoded in JavaScript (fast-png), with exactly sharp's pixels (tested). Why: sharp's fixed cost per
 * image (about 1-2 ms: a libvips pipeline and a thread hop) is 10x the model's own time on 28x28 or
 * 32x32 datasets, where fast-png takes microseconds. Anything else returns undefined (sharp decodes it).
 */
export function plainPng(bytes: Buffer, h: number, w: number, c: 1 | 3): Uint8Array | undefined {
  if (bytes.length < 33 || bytes.readUInt32BE(0) !== 0x89504e47 || bytes.readUInt32BE(12) !== 0x49484452) return undefined;
  if (bytes.readUInt32BE(16) !== w || bytes.readUInt32BE(20) !== h || bytes[24] !== 8 || bytes[25] === 3 || bytes[28] !== 0) return undefined;
  for (let at = 8; at + 8 <= bytes.length; ) {
    const type = bytes.toString('latin1', at + 4, at + 8);
    if (!NEUTRAL_CHUNKS.has(type)) return undefined;
    if (type === 'IEND') break;
    at += 12 + bytes.readUInt32BE(at);
  }
  let png;
  try {
    png = decodePngJs(bytes, { checkCrc: true });
  } catch {
    return undefined; // let sharp decode it, or say why it cannot
  }
  const from = png.channels;
  if (png.depth !== 8 || png.palette || from < 1 || from > 4) return undefined;
  const src = png.data as Uint8Array;
  const colour = from >= 3 ? 3 : 1; // channels before alpha
  if (c === 1 && colour === 3) return undefined; // RGB -> gray: sharp's own weights
  const out = new Uint8Array(h * w * c);
  for (let i = 0; i < h * w; i++) for (let k = 0; k < c; k++) out[i * c + k] = src[i * from + Math.min(k, colour - 1)];
  return out;
}

export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.bmp', '.webp', '.gif', '.tif', '.tiff', '.avif'];
