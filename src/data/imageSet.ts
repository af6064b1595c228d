import * as tf from '../tf.js';

/** One image file and, when known, its label index in the classifier's label space. */
export interface ImageItem {
  path: string;
  label?: number;
}

/**
 * Decoded images kept as uint8 (a quarter of float32's memory); float tensors exist only per batch.
 */
export class ImageSet {
  constructor(
    readonly shape: [number, number, number],
    readonly pixels: Uint8Array,
    readonly items: ImageItem[],
  ) {}
  get size(): number {
    return this.items.length;
  }
  /** Labels, or undefined when any image has none. */
  get labels(): Int32Array | undefined {
    if (this.items.some((i) => i.label === undefined)) return undefined;
    return Int32Array.from(this.items.map((i) => i.label!));
  }
  /** Consecutive index runs of at most `size` images, covering the set in order. */
  *batchIndices(size: number): Generator<number[]> {
    for (let s = 0; s < this.size; s += size) yield Array.from({ length: Math.min(size, this.size - s) }, (_, i) => s + i);
  }
  /** The given images as a set of their own (pixels copied). */
  subset(indices: ArrayLike<number>): ImageSet {
    const per = this.shape[0] * this.shape[1] * this.shape[2];
    const px = new Uint8Array(indices.length * per);
    for (let k = 0; k < indices.length; k++) px.set(this.pixels.subarray(indices[k] * per, (indices[k] + 1) * per), k * per);
    return new ImageSet(this.shape, px, Array.from(indices, (i) => this.items[i]));
  }
  /** The stored bytes of images start .. start + count - 1, [count, H, W, C] (a view, not a copy). */
  pixelsOf(start: number, count: number): Uint8Array {
    const per = this.shape[0] * this.shape[1] * this.shape[2];
    return this.pixels.subarray(start * per, (start + count) * per);
  }
  /** Float32 pixel-space batch of the given images, [n, H, W, C]. */
  batch(indices: ArrayLike<number>): tf.Tensor4D {
    const [h, w, c] = this.shape;
    const per = h * w * c;
    const buf = new Float32Array(indices.length * per);
    for (let k = 0; k < indices.length; k++) {
      const src = this.pixels.subarray(indices[k] * per, (indices[k] + 1) * per);
      buf.set(src, k * per);
    }
    return tf.tensor4d(buf, [indices.length, h, w, c]);
  }
}
