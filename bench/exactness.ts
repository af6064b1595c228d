import type { Classifier } from '../src/classifier/classifier.js';
import { forwardLogits, vjp } from '../src/classifier/compute.js';
import { sliceImages, type Batch } from '../src/math/batch.js';
import { l2RelativeDifference, maxRelativeDifference } from '../src/engine/selfcheck.js';

/**
 * What the zoo benches (bench:onnx, bench:zoo-exact) compare with PyTorch on the same weights: the
 * logits of a batch, and the pixel gradient of logit 1 - logit 0 of its first image, beside PyTorch's
 * float32 and float64 (exact) gradients from bench/torch_zoo.py.
 */

export type TorchExact = {
  logits: number[];
  grad0: number[];
  grad0f64: number[];
};

/** uap's side: the logits of x and image 0's gradient of logit 1 - logit 0. */
export async function uapExact(model: Classifier, x: Batch): Promise<{ logits: Float32Array; grad0: Float32Array }> {
  const logits = await forwardLogits(model, x);
  const dy = new Float32Array(model.numClasses);
  [dy[0], dy[1]] = [-1, 1];
  return { logits, grad0: (await vjp(model, sliceImages(x, 0, 1), dy, 1)).dx };
}

/** Logits (max relative difference) and gradients (L2 relative): ours to PyTorch's float32 and to float64, PyTorch's float32 to float64. */
export function exactness(ours: { logits: Float32Array; grad0: Float32Array }, torch: TorchExact) {
  return {
    logitsRelDiff: maxRelativeDifference(ours.logits, torch.logits),
    gradL2VsTorch: l2RelativeDifference(ours.grad0, torch.grad0),
    gradL2VsFloat64: l2RelativeDifference(ours.grad0, torch.grad0f64),
    torchL2VsFloat64: l2RelativeDifference(torch.grad0, torch.grad0f64),
  };
}
