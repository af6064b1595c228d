/** An image's height, width and channels, in that order (pixels are HWC throughout uap). */
export type ImageShape = [number, number, number];
