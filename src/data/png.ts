import { crc32, inflateSync } from 'node:zlib';

/**
 * The PNG decoder for small images of the model's own size, apart from sharp so that the decoding
 * thread (decodeWorker.ts, through decodeBatch.ts) loads only this and node:fs.
 */

/** A PNG whose header says it has the model's size: worth trying plainPng on (a check of 24 bytes). */
export function pngOfSize(bytes: Uint8Array, h: number, w: number): boolean {
  if (bytes.length < 33) return false;
  const view = new DataView(bytes.buffer, bytes.byteOffset, 24);
  return view.getUint32(0) === 0x89504e47 && view.getUint32(12) === 0x49484452 && view.getUint32(16) === w && view.getUint32(20) === h;
}

/** PNG chunk types (read as big-endian 32-bit words) that change nothing sharp's decode (decode.ts) would do with the pixels. */
const NEUTRAL_CHUNKS = new Set(['IHDR', 'IDAT', 'IEND', 'tEXt', 'zTXt', 'iTXt', 'pHYs', 'tIME', 'sRGB', 'bKGD'].map(typeCode));
const [IDAT, IEND] = [typeCode('IDAT'), typeCode('IEND')];
function typeCode(name: string): number {
  return Buffer.from(name, 'latin1').readUInt32BE(0);
}
/** Channels per PNG colour type (0 gray, 2 RGB, 4 gray + alpha, 6 RGBA); palette (3) is left to sharp. */
const PNG_CHANNELS: Record<number, number> = { 0: 1, 2: 3, 4: 2, 6: 4 };

/**
 * A PNG already of the model's size, 8-bit, not palette, not interlaced, without colour profile or
 * orientation: decoded here, with exactly sharp's pixels (tested, on every row filter). Why by hand:
 * sharp's fixed cost per image (a libvips pipeline and a thread hop) is many times the model's own
 * time on 28x28 or 32x32 datasets, and fast-png's JavaScript inflate is several times slower than
 * node:zlib's (its output buffer grows as it goes), which leaves only the PNG row filters (the spec's
 * five, a few lines) to write (bench/results/stream-torch.md measures the decode path). Anything else returns undefined (sharp decodes it).
 */
export function plainPng(bytes: Buffer, h: number, w: number, c: 1 | 3): Uint8Array | undefined {
  // Every image sharp decodes passes here first: no output buffer for one that is not a PNG of this size.
  if (!pngOfSize(bytes, h, w)) return undefined;
  const out = new Uint8Array(h * w * c);
  return plainPngInto(bytes, h, w, c, out, 0) ? out : undefined;
}

/** plainPng writing the pixels into `out` at `at` (a batch's buffer); false (and `out` untouched) where plainPng gives undefined. */
export function plainPngInto(bytes: Buffer, h: number, w: number, c: 1 | 3, out: Uint8Array, at: number): boolean {
  if (!pngOfSize(bytes, h, w)) return false;
  const from = PNG_CHANNELS[bytes[25]];
  if (bytes[24] !== 8 || !from || bytes[26] !== 0 || bytes[27] !== 0 || bytes[28] !== 0) return false;
  const colour = from >= 3 ? 3 : 1; // channels before alpha
  if (c === 1 && colour === 3) return false; // RGB -> gray: sharp's own weights
  const idat: Buffer[] = [];
  for (let pos = 8; ;) {
    if (pos + 12 > bytes.length) return false; // truncated: sharp says why
    const len = bytes.readUInt32BE(pos);
    const type = bytes.readUInt32BE(pos + 4);
    const end = pos + 8 + len;
    if (!NEUTRAL_CHUNKS.has(type) || end + 4 > bytes.length || crc32(bytes.subarray(pos + 4, end)) !== bytes.readUInt32BE(end))
      return false;
    if (type === IDAT) idat.push(bytes.subarray(pos + 8, end));
    if (type === IEND) break;
    pos = end + 4;
  }
  const stride = w * from;
  const size = h * (stride + 1);
  let rows: Buffer;
  try {
    // Output of exactly the image's size in one chunk: node:zlib's default 16 KiB chunk per call was
    // most of what the decoding thread allocated (and collected) on 28x28 images; more output is refused.
    rows = inflateSync(idat.length === 1 ? idat[0] : Buffer.concat(idat), { chunkSize: Math.max(64, size + 1), maxOutputLength: size });
  } catch {
    return false;
  }
  if (rows.length !== size || !unfilter(rows, h, stride, from)) return false;
  for (let y = 0; y < h; y++) {
    const row = y * (stride + 1) + 1;
    const to = at + y * w * c;
    if (from === c) out.set(rows.subarray(row, row + stride), to);
    else for (let x = 0; x < w; x++) for (let k = 0; k < c; k++) out[to + x * c + k] = rows[row + x * from + Math.min(k, colour - 1)];
  }
  return true;
}

/**
 * Undoes PNG's per-row filters in place (each row: a filter byte, then `stride` bytes; `bpp` bytes per
 * pixel): 0 none, 1 sub, 2 up, 3 average, 4 Paeth, as the PNG specification defines them, one loop
 * per filter (a byte costs a few nanoseconds). False on an unknown filter type.
 */
function unfilter(rows: Buffer, h: number, stride: number, bpp: number): boolean {
  for (let y = 0; y < h; y++) {
    const at = y * (stride + 1) + 1;
    const up = at - stride - 1; // the previous row's first byte
    const filter = rows[at - 1];
    if (filter === 0) continue;
    if (filter === 1) {
      for (let i = bpp; i < stride; i++) rows[at + i] += rows[at + i - bpp];
    } else if (filter === 2) {
      if (y > 0) for (let i = 0; i < stride; i++) rows[at + i] += rows[up + i];
    } else if (filter === 3) {
      for (let i = 0; i < stride; i++) rows[at + i] += ((i >= bpp ? rows[at + i - bpp] : 0) + (y > 0 ? rows[up + i] : 0)) >> 1;
    } else if (filter === 4) {
      for (let i = 0; i < stride; i++) {
        const a = i >= bpp ? rows[at + i - bpp] : 0;
        const b = y > 0 ? rows[up + i] : 0;
        const c = i >= bpp && y > 0 ? rows[up + i - bpp] : 0;
        const pa = Math.abs(b - c); // |p - a| with p = a + b - c
        const pb = Math.abs(a - c);
        const pc = Math.abs(a + b - 2 * c);
        rows[at + i] += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
    } else return false;
  }
  return true;
}
