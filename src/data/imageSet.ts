import * as tf from '../tf.js';
import { Rng } from '../math/random.js';
import { labelsOf, type DecodedBatch, type ImageItem, type ImageSource } from './source.js';
import type { ImageShape } from '../math/imageShape.js';
import { perturbedBytes, type Batch } from '../math/batch.js';

export type { ImageItem };

/**
 * Decoded images kept as uint8 (a quarter of float32's memory); float tensors exist only per batch.
 */
export class ImageSet implements ImageSource {
  constructor(
    readonly shape: ImageShape,
    readonly pixels: Uint8Array,
    readonly items: ImageItem[],
  ) {}
  get size(): number {
    return this.items.length;
  }
  /** Labels, or undefined when any image has none. */
  get labels(): Int32Array | undefined {
    return labelsOf(this.items);
  }
  async *batches(size: number): AsyncGenerator<DecodedBatch> {
    for (let s = 0; s < this.size; s += size) {
      const n = Math.min(size, this.size - s);
      yield { start: s, items: this.items.slice(s, s + n), pixels: this.pixelsOf(s, n) };
    }
  }
  async pick(indices: ArrayLike<number>): Promise<Uint8Array> {
    return this.subset(indices).pixels;
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
    return new ImageSet(
      this.shape,
      px,
      Array.from(indices, (i) => this.items[i]),
    );
  }
  /**
   * A seeded split into a crafting part and a held-out part of `heldOut` images (each keeps the set's
   * order): the held-out images are never seen while v is made, so their fooling rate shows universality.
   */
  split(heldOut: number, seed: number): { craft: ImageSet; held: ImageSet } {
    const order = new Rng(seed).permutation(this.size);
    const isHeld = new Uint8Array(this.size);
    for (let k = 0; k < heldOut; k++) isHeld[order[k]] = 1;
    const pick = (want: number) => Array.from({ length: this.size }, (_, i) => i).filter((i) => isHeld[i] === want);
    return { craft: this.subset(pick(0)), held: this.subset(pick(1)) };
  }
  /** The stored bytes of images start .. start + count - 1, [count, H, W, C] (a view, not a copy). */
  pixelsOf(start: number, count: number): Uint8Array {
    const per = this.shape[0] * this.shape[1] * this.shape[2];
    return this.pixels.subarray(start * per, (start + count) * per);
  }
  /** The given images as a plain float batch, clip(x + v, 0, 255) when a perturbation v [H, W, C] is given. */
  images(indices: ArrayLike<number>, v: Float32Array | null = null): Batch {
    return perturbedBytes(this.pixels, this.shape, v, indices);
  }
  /** Float32 pixel-space batch of the given images, [n, H, W, C] (a TF.js tensor). */
  batch(indices: ArrayLike<number>): tf.Tensor4D {
    return tf.tensor4d(this.images(indices).data, [indices.length, ...this.shape]);
  }
}
