/**
 * How large each kind of file uap reads may be (bounded.ts reads them; the studio checks .npz sizes
 * with the same caps in the browser).
 */

/** The cap of each kind of file, in MiB (UAP_MAX_IMAGE_MB and so on override them). */
export const READ_LIMITS_MB = {
  /** One image file (a 24-megapixel PNG is about 70 MiB). */
  image: 256,
  /** Labels, dataset lists, card and run-folder JSON, class names. */
  text: 256,
  /** Model files and weight shards (ONNX, TFLite, model.json weights). */
  model: 2048,
  /** .npy / .npz / perturbation files. */
  array: 2048,
} as const;

export type ReadKind = keyof typeof READ_LIMITS_MB;

/** The cap of `kind` in bytes, after the environment's override. */
export function readLimit(kind: ReadKind): number {
  // The studio shares this module in the browser, where there is no environment.
  const env = typeof process === 'undefined' ? undefined : process.env[`UAP_MAX_${kind.toUpperCase()}_MB`];
  const mb = env && /^\d+(\.\d+)?$/.test(env.trim()) && Number(env) > 0 ? Number(env) : READ_LIMITS_MB[kind];
  return Math.floor(mb * 1024 * 1024);
}
