import { describe, it, expect } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { zipSync } from 'fflate';
import { uapCli } from './helpers.js';
import { Rng } from '../src/math/random.js';
import { encodeNpy, readNpy, writeNpy, type NdArray } from '../src/io/npy.js';
import { encodeNpz, fromPixelsHwc, readArrayFile, toPixelsHwc, LAYOUTS, UNITS } from '../src/perturbation/file.js';
import { UsageError, withFlags } from '../src/errors.js';

/**
 * Perturbations move between uap and PyTorch / ART (issue 16): every layout and unit converts there
 * and back exactly, through .npy and .npz files; detection takes the obvious cases and refuses the
 * ambiguous ones; `uap export` then `uap evaluate` of the export scores like the original.
 */

const tmp = () => mkdtempSync(join(tmpdir(), 'uap-interop-'));
const SHAPE: [number, number, number] = [6, 5, 3];
const TORCHVISION = { mean: [123.675, 116.28, 103.53], std: [58.395, 57.12, 57.375] };
const model = { inputShape: SHAPE, preprocess: TORCHVISION };

/** A pixel-unit HWC perturbation with entries up to 10 (a typical Linf 10 UAP). */
function pixelV(seed = 1): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: SHAPE[0] * SHAPE[1] * SHAPE[2] }, () => (rng.next() * 2 - 1) * 10);
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  return a.reduce((m, t, i) => Math.max(m, Math.abs(t - b[i])), 0);
}

describe('layouts and units: there and back', () => {
  for (const layout of LAYOUTS)
    for (const units of UNITS)
      it(`${layout}, ${units}: exported, written as .npy and .npz, read back equal`, () => {
        const v = pixelV();
        const out = fromPixelsHwc(v, SHAPE, layout, units, TORCHVISION, 'test');
        expect(out.shape).toEqual({ hwc: [6, 5, 3], chw: [3, 6, 5], nhwc: [1, 6, 5, 3], nchw: [1, 3, 6, 5] }[layout]);
        const dir = tmp();
        writeNpy(join(dir, 'v.npy'), out);
        writeFileSync(join(dir, 'v.npz'), encodeNpz({ uap: out }));
        for (const file of ['v.npy', 'v.npz']) {
          // The layout is detected (3 channels at one end only); the units are given.
          const back = toPixelsHwc(readArrayFile(join(dir, file)), { units }, model, file);
          expect(back.layout).toBe(layout);
          expect(back.shape).toEqual(SHAPE);
          expect(maxDiff(back.data, v)).toBeLessThan(1e-4);
        }
      });

  it('CHW in [0, 1] units is v / 255 with the channel axis first; normalised units divide by std', () => {
    const v = pixelV();
    const chw = fromPixelsHwc(v, SHAPE, 'chw', 'unit', undefined, 'test');
    const norm = fromPixelsHwc(v, SHAPE, 'chw', 'normalized', TORCHVISION, 'test');
    const [h, w, c] = SHAPE;
    for (const [y, x, ch] of [
      [0, 0, 0],
      [2, 3, 1],
      [5, 4, 2],
    ]) {
      const pixel = v[(y * w + x) * c + ch];
      expect(chw.data[(ch * h + y) * w + x]).toBeCloseTo(pixel / 255, 6);
      expect(norm.data[(ch * h + y) * w + x]).toBeCloseTo(pixel / TORCHVISION.std[ch], 6);
    }
  });

  it('a model with scale / offset preprocessing: normalised units are pixels x scale', () => {
    const v = pixelV();
    const out = fromPixelsHwc(v, SHAPE, 'hwc', 'normalized', { scale: 1 / 127.5, offset: -1 }, 'test');
    expect(out.data[7]).toBeCloseTo(v[7] / 127.5, 6);
  });
});

describe('detection: the obvious cases, and refusals of the ambiguous ones', () => {
  const arr = (shape: number[], scale = 10): NdArray => {
    const rng = new Rng(3);
    return { shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (rng.next() * 2 - 1) * scale) };
  };
  const message = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(UsageError);
      return (e as UsageError).message;
    }
    throw new Error('expected a UsageError');
  };

  it('pixel-sized values are read as pixels; small ones are refused, naming the choices', () => {
    expect(toPixelsHwc(arr([6, 5, 3]), {}, model, 'f').units).toBe('pixels');
    expect(message(() => toPixelsHwc(arr([3, 6, 5], 0.04), {}, model, 'f.npy'))).toMatch(
      /f\.npy: its values stay within \+-0\.0\d+.*pass units pixels, unit or normalized/,
    );
  });

  it('the CLI names the flag where the library names the option', () => {
    try {
      toPixelsHwc(arr([3, 6, 5], 0.04), {}, model, 'f.npy');
    } catch (e) {
      expect(withFlags((e as UsageError).template)).toMatch(/pass --units pixels, unit or normalized/);
    }
  });

  it('channels at both ends, none, several perturbations, or a layout of the wrong rank are refused', () => {
    const cube = { inputShape: [3, 7, 3] as [number, number, number] };
    expect(message(() => toPixelsHwc(arr([3, 7, 3]), {}, cube, 'f'))).toMatch(/channels first and last; pass layout/);
    expect(toPixelsHwc(arr([3, 7, 3]), { layout: 'hwc' }, cube, 'f').shape).toEqual([3, 7, 3]);
    expect(message(() => toPixelsHwc(arr([6, 5, 4]), {}, model, 'f'))).toMatch(/no axis of 3 channels/);
    expect(message(() => toPixelsHwc(arr([2, 3, 6, 5]), {}, model, 'f'))).toMatch(/holds 2 perturbations/);
    expect(message(() => toPixelsHwc(arr([3, 6, 5]), { layout: 'nchw' }, model, 'f'))).toMatch(/layout nchw needs 4 axes/);
    expect(message(() => toPixelsHwc(arr([6, 5, 3]), { layout: 'chw' }, model, 'f'))).toMatch(/read as chw it has 6 channels/);
    expect(message(() => toPixelsHwc({ shape: [6, 5, 3], data: new Float32Array(90).fill(NaN) }, {}, model, 'f'))).toMatch(/NaN/);
    expect(message(() => toPixelsHwc(arr([6, 5, 3]), { units: 'normalized' }, { inputShape: SHAPE }, 'f'))).toMatch(
      /needs the model's normalisation/,
    );
    expect(message(() => toPixelsHwc(arr([6, 5, 3]), { layout: 'whc' as never }, model, 'f'))).toMatch(
      /layout whc: expected hwc, chw, nhwc, nchw or auto/,
    );
  });

  it('.npz: the only array, a named one, a compressed archive; several unnamed are refused', () => {
    const dir = tmp();
    const a = arr([1, 3, 6, 5]);
    const b = arr([6, 5, 3]);
    const two = join(dir, 'two.npz');
    writeFileSync(two, encodeNpz({ uap: a, other: b }));
    expect(message(() => readArrayFile(two))).toMatch(/holds uap, other; name one with array/);
    expect(readArrayFile(two, 'other').shape).toEqual([6, 5, 3]);
    expect(message(() => readArrayFile(two, 'nope'))).toMatch(/has no array nope \(it holds uap, other\)/);
    // np.savez_compressed writes deflated entries.
    const packed = join(dir, 'packed.npz');
    writeFileSync(packed, zipSync({ 'noise.npy': [encodeNpy(a), { level: 6 }] }));
    const got = readArrayFile(packed);
    expect(got.shape).toEqual([1, 3, 6, 5]);
    expect(maxDiff(got.data, a.data)).toBe(0);
    writeFileSync(join(dir, 'bad.npz'), Uint8Array.from([0x50, 0x4b, 3, 4, 0, 0]));
    expect(message(() => readArrayFile(join(dir, 'bad.npz')))).toMatch(/not a readable \.npz/);
  });
});

describe('uap export and uap evaluate across formats (CLI, embedded model)', () => {
  it('a perturbation exported as NCHW [0, 1] units, and as normalised .npz, scores like the original', async () => {
    const dir = tmp();
    const rng = new Rng(5);
    const v = Float32Array.from({ length: 28 * 28 }, () => (rng.next() < 0.5 ? -1 : 1) * 60);
    const own = join(dir, 'v.npy');
    writeNpy(own, { data: v, shape: [28, 28, 1] });

    const unit = await uapCli(['export', own, '--layout', 'nchw', '--units', 'unit']);
    expect(unit.status, unit.stderr).toBe(0);
    const unitFile = join(dir, 'v-nchw-unit.npy');
    expect(unit.stdout).toContain(`v = torch.from_numpy(np.load("${unitFile}"))`);
    expect(unit.stdout).toContain('x_adv = (x + v).clamp(0, 1)');
    const exported = readNpy(unitFile);
    expect(exported.shape).toEqual([1, 1, 28, 28]);
    expect(exported.data[0]).toBeCloseTo(v[0] / 255, 6);

    const normFile = join(dir, 'v.npz');
    const norm = await uapCli([
      'export',
      own,
      '--layout',
      'chw',
      '--units',
      'normalized',
      '--model',
      'fashion',
      '-o',
      normFile,
      '--array',
      'uap',
    ]);
    expect(norm.status, norm.stderr).toBe(0);
    expect(norm.stdout).toContain(`np.load("${normFile}")["uap"]`);

    const score = async (...args: string[]) => {
      const r = await uapCli(['evaluate', '--limit', '40', ...args]);
      expect(r.status, r.stderr).toBe(0);
      return /fooling rate: (\S+)/.exec(r.stdout)![1];
    };
    const original = await score('--perturbation', own);
    expect(await score('--perturbation', unitFile, '--units', 'unit')).toBe(original);
    expect(await score('--perturbation', normFile, '--units', 'normalized')).toBe(original);

    // Small values without --units: refused, naming the flag.
    const asked = await uapCli(['evaluate', '--limit', '8', '--perturbation', unitFile]);
    expect(asked.status).toBe(2);
    expect(asked.stderr).toMatch(
      /uap: error: perturbation .*v-nchw-unit\.npy: its values stay within .*pass --units pixels, unit or normalized/,
    );
    expect(readFileSync(unitFile).length).toBeGreaterThan(0);
  }, 240_000);
});
