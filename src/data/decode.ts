import { readBoundedAsync } from '../io/bounded.js';
import sharp from 'sharp';
import { plainPng } from './png.js';

/**
 * Decodes one image (a file, or its bytes) to uint8 HWC pixels of exactly [h, w, c]: the short side is
 * resized to fit, then the centre is cropped (sharp's `cover`). Grayscale, RGBA, CMYK and palette images
 * become RGB (or grayscale when c is 1); alpha is dropped.
 */
export async function decodeImage(file: string | Buffer, h: number, w: number, c: 1 | 3): Promise<Uint8Array> {
  const bytes = typeof file === 'string' ? await readBoundedAsync(file, { what: 'image', kind: 'image' }) : file;
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

export { plainPng };

export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.bmp', '.webp', '.gif', '.tif', '.tiff', '.avif'];
