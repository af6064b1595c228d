/** The browser host's image decoding (the Node host's is src/data/decode.ts, with sharp). */

/**
 * The image decoded and fitted like the CLI's, to uint8 HWC pixels of exactly [h, w, c]: the short
 * side scaled to fit, the centre cropped (sharp's "cover"); gray (c = 1) by the Rec. 601 weights.
 */
export async function decodeImageBlob(blob: Blob, [h, w, c]: [number, number, number]): Promise<Uint8Array> {
  const bmp = await createImageBitmap(blob);
  const s = Math.max(w / bmp.width, h / bmp.height);
  const sw = w / s;
  const sh = h / s;
  const canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext('2d')!;
  ctx.drawImage(bmp, (bmp.width - sw) / 2, (bmp.height - sh) / 2, sw, sh, 0, 0, w, h);
  bmp.close();
  const rgba = ctx.getImageData(0, 0, w, h).data;
  const out = new Uint8Array(h * w * c);
  for (let i = 0; i < h * w; i++) {
    if (c === 3) for (let k = 0; k < 3; k++) out[i * 3 + k] = rgba[i * 4 + k];
    else out[i] = Math.round(0.299 * rgba[i * 4] + 0.587 * rgba[i * 4 + 1] + 0.114 * rgba[i * 4 + 2]);
  }
  return out;
}

/** Where an image comes from in the browser: a file the user picked, else a URL to fetch. */
export interface ImageSource {
  url?: string;
  file?: File;
}

/** The pixels of one image as decodeImageBlob fits them, read from its file or fetched. */
export async function readImage(source: ImageSource, shape: [number, number, number]): Promise<Uint8Array> {
  const blob = source.file ?? (await (await fetch(source.url!)).blob());
  return decodeImageBlob(blob, shape);
}
