import { describe, it, expect } from 'vitest';
import { mkdtempSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '../src/tf.js';
import { initBackend } from '../src/engine/backend.js';
import { computeJob } from '../src/jobs/compute.js';
import { readNpy } from '../src/io/npy.js';
import { uapCli } from './helpers.js';

const backend = await initBackend();

/** The embedded default model end to end, through the library and through the CLI (as `npm run demo` runs it). */
describe('end to end on the embedded Fashion-MNIST model', () => {
  it('computes a UAP that fools far more validation images than random noise of the same norm', async () => {
    const out = mkdtempSync(join(tmpdir(), 'uap-fashion-'));
    const s = await computeJob({ model: 'fashion', backend, out, options: { norm: 'inf', xi: 40, maxPasses: 8, seed: 1 } });
    expect(s.onVal).toBeDefined();
    expect(s.onVal!.cleanAccuracy).toBeGreaterThan(0.85);
    expect(s.onVal!.foolingRate).toBeGreaterThan(0.35);
    // Universal >> random at equal norm: same Linf (sign noise, the strongest random Linf noise) and same L2.
    expect(s.onVal!.foolingRate).toBeGreaterThan(1.8 * s.randomOnVal!.sameLp.mean);
    expect(s.onVal!.foolingRate).toBeGreaterThan(2.5 * s.randomOnVal!.sameL2.mean);
    for (const f of ['perturbation.npy', 'perturbation.png', 'examples.png', 'metrics.json', 'config.json', 'checkpoint.json'])
      expect(existsSync(join(out, f)), f).toBe(true);
    const v = readNpy(join(out, 'perturbation.npy'));
    expect(v.shape).toEqual([28, 28, 1]);
    expect(Math.max(...Array.from(v.data, Math.abs))).toBeLessThanOrEqual(40 + 1e-4);
    const metrics = JSON.parse(readFileSync(join(out, 'metrics.json'), 'utf8'));
    expect(metrics.onVal.foolingRate).toBe(s.onVal!.foolingRate);
    expect(metrics.run.history.length).toBe(s.result.passes);
  }, 600_000);

  it('uap compute, then uap evaluate on the saved perturbation, from the command line', async () => {
    const out = mkdtempSync(join(tmpdir(), 'uap-fashion-cli-'));
    const c = await uapCli(['compute', '--limit', '40', '--val-limit', '100', '--max-passes', '1', '--xi', '40', '-o', out]);
    expect(c.status, c.stderr).toBe(0);
    expect(c.stdout).toMatch(/fooling rate on validation \(100 images\): \d+\.\d%/);
    expect(c.stderr).toMatch(/pass 1: fooling rate on X/);
    const e = await uapCli(['evaluate', '--perturbation', join(out, 'perturbation.npy'), '--limit', '100']);
    expect(e.status, e.stderr).toBe(0);
    const computed = JSON.parse(readFileSync(join(out, 'metrics.json'), 'utf8')).onVal.foolingRate;
    expect(e.stdout).toContain(`fooling rate: ${(computed * 100).toFixed(1)}%`);
    tf.disposeVariables();
  }, 600_000);
});
