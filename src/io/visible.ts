/** Pictures of perturbations, without file or image-library access (the browser studio shares it). */

/** v mapped to [0,255] around mid-grey, 128 + 127 * v / max|v| (as the paper's figures show it). */
export function visiblePerturbation(v: Float32Array): Uint8Array {
  let m = 0;
  for (const a of v) m = Math.max(m, Math.abs(a));
  const out = new Uint8Array(v.length);
  const f = m > 0 ? 127 / m : 0;
  for (let i = 0; i < v.length; i++) out[i] = Math.round(128 + v[i] * f);
  return out;
}
