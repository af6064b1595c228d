/** Cross-entropy of logits `z` at class `cls`, and its gradient softmax(z) - onehot(cls). */
export function crossEntropy(z: Float32Array, cls: number): { ce: number; grad: Float32Array } {
  let max = -Infinity;
  for (const x of z) max = Math.max(max, x);
  let sum = 0;
  for (const x of z) sum += Math.exp(x - max);
  const grad = Float32Array.from(z, (x, j) => Math.exp(x - max) / sum - (j === cls ? 1 : 0));
  return { ce: Math.log(sum) + max - z[cls], grad };
}
