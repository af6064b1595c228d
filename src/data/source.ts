import type { ImageShape } from '../math/imageShape.js';
/** One image and, when known, its label index in the classifier's label space. */
export interface ImageItem {
  /** The image file, or the tar shard holding it (then `member` says where). */
  path: string;
  label?: number;
  /** Set when the image is a member of a tar shard: its name and where its bytes lie in `path`. */
  member?: TarMember;
}

export interface TarMember {
  name: string;
  offset: number;
  size: number;
}

/** How an image is named in messages and tables: its file, or shard:member. */
export function itemName(item: ImageItem): string {
  return item.member ? `${item.path}:${item.member.name}` : item.path;
}

/** Decoded images start .. start + n - 1 of a source, [n, H, W, C] uint8. */
export interface DecodedBatch {
  start: number;
  items: ImageItem[];
  pixels: Uint8Array;
}

/**
 * A set of images read batch by batch: in memory (ImageSet) or decoded on demand (StreamedImages).
 * Scoring code takes this, so a validation set of any size runs in bounded memory.
 */
export interface ImageSource {
  readonly shape: ImageShape;
  /** The images that decode (for a stream: all listed ones not yet found unreadable). */
  readonly items: ImageItem[];
  readonly size: number;
  /** Labels, or undefined when any image has none. */
  readonly labels: Int32Array | undefined;
  /** The images in order, `size` at a time (the last batch may be shorter). */
  batches(size: number): AsyncIterable<DecodedBatch>;
  /** The images at the given positions, [n, H, W, C] uint8, in the order given. */
  pick(indices: ArrayLike<number>): Promise<Uint8Array>;
}

/** Labels of a list of items, or undefined when any has none. */
export function labelsOf(items: ImageItem[]): Int32Array | undefined {
  if (items.some((i) => i.label === undefined)) return undefined;
  return Int32Array.from(items, (i) => i.label!);
}
