import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { readBounded, readLimit } from '../io/bounded.js';
import { plainPngInto } from './png.js';
import type { ImageShape } from '../math/imageShape.js';

/**
 * What the decoding thread (decodeWorker.ts) does with one batch: reads the files or stretches of tar
 * shards that hold its images and decodes the plain PNGs of the model's size into one pixel buffer.
 * Reading here as well as decoding keeps both off the main thread, which must stay free to hand
 * batches to ONNX Runtime's workers (and makes no garbage of a Buffer per image there).
 */

/** A file, or a stretch of one (length -1: the whole file). */
export interface SpanToRead {
  file: string;
  start: number;
  length: number;
}

/** One batch: the spans to read, and where each image's bytes lie in them (size -1: the whole span). */
export interface DecodeRequest {
  shape: ImageShape;
  spans: SpanToRead[];
  images: { span: number; offset: number; size: number }[];
}

/**
 * Image k decoded into pixels[k] where ok[k] is 1. The bytes of a span come back where one of its images
 * was left undecoded (for sharp, on the main thread); null where the span's read failed or was not needed.
 */
export interface DecodeReply {
  pixels: Uint8Array;
  ok: Uint8Array;
  bytes: (Uint8Array | null)[];
}

/** A span's bytes in a buffer of its own (so it can be handed over whole), or null when it cannot be read. */
function readSpan({ file, start, length }: SpanToRead): Buffer | null {
  try {
    if (length < 0) return readBounded(file, { what: 'image', kind: 'image' });
    const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      // A span's length comes from tar headers: allocated only when the file holds it (and it is not too big).
      const st = fstatSync(fd);
      if (!st.isFile() || start + length > st.size || length > readLimit('image') * 64) return null;
      const buf = Buffer.allocUnsafeSlow(length);
      return buf.subarray(0, readSync(fd, buf, 0, length, start));
    } finally {
      closeSync(fd);
    }
  } catch {
    return null;
  }
}

export function readAndDecode({ shape: [h, w, c], spans, images }: DecodeRequest): DecodeReply {
  const per = h * w * c;
  const data = spans.map(readSpan);
  const pixels = new Uint8Array(images.length * per);
  const ok = new Uint8Array(images.length);
  const missed = new Set<number>();
  images.forEach(({ span, offset, size }, k) => {
    const bytes = data[span];
    const end = size < 0 ? (bytes?.length ?? 0) : offset + size;
    if (bytes && end <= bytes.length && plainPngInto(bytes.subarray(offset, end), h, w, c as 1 | 3, pixels, k * per)) ok[k] = 1;
    else missed.add(span);
  });
  return { pixels, ok, bytes: data.map((d, i) => (d && missed.has(i) ? d : null)) };
}
