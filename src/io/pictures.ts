import sharp, { type OverlayOptions } from 'sharp';
import { visiblePerturbation } from './visible.js';
import { writeAtomic } from './atomic.js';
import type { ImageShape } from '../math/imageShape.js';

export { visiblePerturbation };

/**
 * Pictures for people: the perturbation scaled for visibility and a grid of clean / perturbed images
 * with their labels. Pixel data comes in as HWC float or uint8 in [0,255].
 */

function rawImage(px: Uint8Array, [h, w, c]: ImageShape) {
  return sharp(Buffer.from(px.buffer, px.byteOffset, px.byteLength), { raw: { width: w, height: h, channels: c as 1 | 3 } });
}

/** Upscale factor so small images (28x28) are readable in the pictures. */
function zoomFor(h: number): number {
  return h < 96 ? Math.ceil(112 / h) : 1;
}

export async function writePerturbationPng(file: string, v: Float32Array, shape: ImageShape): Promise<void> {
  const z = zoomFor(shape[0]);
  // Encoded in memory, written by Node: a full disk is then an OS error naming the file, not libvips' text.
  const png = await rawImage(visiblePerturbation(v), shape)
    .resize(shape[1] * z, shape[0] * z, { kernel: 'nearest' })
    .png()
    .toBuffer();
  writeAtomic(file, png);
}

export interface GridCell {
  pixels: Uint8Array;
  caption: string;
  /** Red caption: the label changed. */
  alert?: boolean;
}

const escapeXml = (s: string) => s.replace(/[<>&'"]/g, (ch) => `&#${ch.charCodeAt(0)};`);

/**
 * A grid of rows, each row a list of cells with captions under them (the SVG text is rendered by
 * sharp's librsvg). Used for clean | perturbed | scaled-v rows.
 */
export async function writeGridPng(file: string, rows: GridCell[][], shape: ImageShape, title: string): Promise<void> {
  const z = zoomFor(shape[0]);
  const tw = shape[1] * z;
  const th = shape[0] * z;
  const capH = 34;
  const gap = 8;
  const titleH = 28;
  const cols = Math.max(...rows.map((r) => r.length));
  const width = cols * (tw + gap) + gap;
  const height = titleH + rows.length * (th + capH + gap) + gap;
  const layers: OverlayOptions[] = [];
  const texts: string[] = [`<text x="${gap}" y="20" font-family="sans-serif" font-size="15" font-weight="bold">${escapeXml(title)}</text>`];
  for (let r = 0; r < rows.length; r++) {
    for (let c = 0; c < rows[r].length; c++) {
      const cell = rows[r][c];
      const left = gap + c * (tw + gap);
      const top = titleH + r * (th + capH + gap);
      const tile = await rawImage(cell.pixels, shape).resize(tw, th, { kernel: 'nearest' }).toColourspace('srgb').png().toBuffer();
      layers.push({ input: tile, left, top });
      const lines = wrap(cell.caption, Math.max(8, Math.floor(tw / 6.5)));
      lines
        .slice(0, 2)
        .forEach((line, i) =>
          texts.push(
            `<text x="${left}" y="${top + th + 13 + i * 13}" font-family="sans-serif" font-size="11" fill="${cell.alert ? '#c00' : '#000'}">${escapeXml(line)}</text>`,
          ),
        );
    }
  }
  const svg = Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${texts.join('')}</svg>`);
  layers.push({ input: svg, left: 0, top: 0 });
  const png = await sharp({ create: { width, height, channels: 3, background: '#ffffff' } })
    .composite(layers)
    .png()
    .toBuffer();
  writeAtomic(file, png);
}

function wrap(s: string, n: number): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of s.split(' ')) {
    if ((line + ' ' + word).trim().length > n && line) {
      out.push(line);
      line = word;
    } else line = (line + ' ' + word).trim();
  }
  if (line) out.push(line);
  return out.map((l) => (l.length > n ? l.slice(0, n - 1) + '…' : l));
}
