import { describe, it, expect, beforeAll } from 'vitest';
import * as tf from '../src/tf.js';
import { addClipped, addScaled, batchOf, perturbedBytes, pickImages, shiftedBy, sliceImages } from '../src/math/batch.js';
import { batchOfTensor, tensorOfBatch } from '../src/engine/tfjs/batchTensor.js';
import { perturb } from '../src/math/perturb.js';
import type { ImageShape } from '../src/math/imageShape.js';
import { forwardLogits, vjp } from '../src/classifier/compute.js';
import { candidateGradients } from '../src/classifier/gradients.js';
import { deepfool } from '../src/attacks/deepfool.js';
import { tinyNet } from './helpers.js';

// The plain batches that cross the runtime seam, against the TF.js float32 kernels they replaced: the
// same bits, so that attacks give the results they gave before.
beforeAll(async () => {
  await tf.setBackend('cpu');
});

const shape: ImageShape = [3, 2, 2];
const size = 12;
const values = (n: number, seed: number, lo = -40, hi = 300) =>
  Float32Array.from({ length: n * size }, (_, i) => lo + ((((Math.sin(i * 12.9898 + seed) * 43758.5453) % 1) + 1) % 1) * (hi - lo));

describe('plain image batches', () => {
  it('batchOf refuses data that is not whole images; tensors round-trip', () => {
    expect(() => batchOf(new Float32Array(13), shape)).toThrow(/13 values are not whole images of 3x2x2/);
    expect(() => batchOf(new Float32Array(24), shape, 3)).toThrow(/24 values are not 3 images/);
    const x = batchOf(values(2, 1), shape);
    expect(x.n).toBe(2);
    const t = tensorOfBatch(x);
    expect(t.shape).toEqual([2, 3, 2, 2]);
    const back = batchOfTensor(t);
    expect(back.shape).toEqual(shape);
    expect(Array.from(back.data)).toEqual(Array.from(x.data));
    t.dispose();
  });

  it('sliceImages is a view; pickImages copies the chosen images, repeats included', () => {
    const x = batchOf(values(4, 2), shape);
    const s = sliceImages(x, 1, 2);
    expect(s.n).toBe(2);
    expect(s.data.buffer).toBe(x.data.buffer);
    expect(Array.from(s.data)).toEqual(Array.from(x.data.subarray(12, 36)));
    const p = pickImages(x, [3, 0, 3]);
    expect(p.n).toBe(3);
    expect(p.data.buffer).not.toBe(x.data.buffer);
    expect(Array.from(p.data)).toEqual([...x.data.subarray(36, 48), ...x.data.subarray(0, 12), ...x.data.subarray(36, 48)]);
  });

  it('addClipped and addScaled give the bits of the TF.js float32 kernels', () => {
    const x = batchOf(values(3, 3, 0, 255), shape);
    const r = values(3, 4, -30, 30);
    for (const scale of [1, 1.02, 0.1, 7.3]) {
      const t = tensorOfBatch(x);
      const rt = tf.tensor4d(r, [3, ...shape]);
      const clipped = tf.tidy(() => tf.clipByValue(tf.add(t, tf.mul(rt, scale)), 0, 255).dataSync());
      const unclipped = tf.tidy(() => tf.add(t, tf.mul(rt, scale)).dataSync());
      expect(Array.from(addClipped(x, r, scale).data)).toEqual(Array.from(clipped));
      expect(Array.from(addScaled(x, r, scale).data)).toEqual(Array.from(unclipped));
      tf.dispose([t, rt]);
    }
    expect(() => addClipped(x, new Float32Array(5))).toThrow(/5 perturbation values/);
  });

  it('perturbedBytes is perturb() of the stored bytes, for all images or those picked', () => {
    const pixels = Uint8Array.from({ length: 4 * size }, (_, i) => (i * 53) % 256);
    const v = values(1, 5, -20, 20);
    const want = tf.tidy(() => perturb(tf.tensor4d(Float32Array.from(pixels), [4, ...shape]), tf.tensor3d(v, shape)).dataSync());
    expect(Array.from(perturbedBytes(pixels, shape, v).data)).toEqual(Array.from(want));
    const picked = perturbedBytes(pixels, shape, v, [2, 0]);
    expect(Array.from(picked.data)).toEqual([...want.subarray(24, 36), ...want.subarray(0, 12)]);
    expect(Array.from(perturbedBytes(pixels, shape, null, [1]).data)).toEqual(Array.from(pixels.subarray(12, 24)));
    expect(() => perturbedBytes(pixels, shape, v, [4])).toThrow(/out of range/);
    expect(() => perturbedBytes(pixels, shape, new Float32Array(3))).toThrow(/v has 3 values/);
  });

  it('shiftedBy gives x + v unclipped and clipped, one v for every image', () => {
    const x = batchOf(values(2, 6, 0, 255), shape);
    const v = values(1, 7, -160, 160);
    const { raw, adv } = shiftedBy(x, v);
    const t = tensorOfBatch(x);
    const vt = tf.tensor3d(v, shape);
    expect(Array.from(raw)).toEqual(Array.from(tf.tidy(() => tf.add(t, vt).dataSync())));
    expect(Array.from(adv.data)).toEqual(Array.from(tf.tidy(() => tf.clipByValue(tf.add(t, vt), 0, 255).dataSync())));
    expect(raw.some((u) => u < 0 || u > 255)).toBe(true); // the case the gradient mask is for
    tf.dispose([t, vt]);
  });

  it("the forward and gradient functions refuse what is not a batch of the model's images (a tensor gave empty results)", async () => {
    const model = tinyNet([4, 4, 1], 3);
    const t = tf.zeros([2, 4, 4, 1]) as tf.Tensor4D;
    const wrong = batchOf(new Float32Array(2 * 12), shape);
    const expected = /expected a batch of 4x4x1 images .*batchOf\(pixels, shape\), or batchOfTensor\(t\)/;
    for (const [name, call] of [
      ['forwardLogits', (x: never) => forwardLogits(model, x)],
      ['vjp', (x: never) => vjp(model, x, new Float32Array(6))],
      ['candidateGradients', (x: never) => candidateGradients(model, x, Int32Array.from([0, 1]), 1)],
      ['deepfool', (x: never) => deepfool(model, x)],
    ] as const) {
      await expect(call(t as never), name).rejects.toThrow(new RegExp(`^${name}: ${expected.source}`));
      await expect(call(wrong as never), name).rejects.toThrow(expected);
    }
    const right = batchOfTensor(t);
    expect((await forwardLogits(model, right)).length).toBe(6);
    expect(batchOf(Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]), shape).data).toBeInstanceOf(Float32Array);
    t.dispose();
    model.dispose();
  });
});
