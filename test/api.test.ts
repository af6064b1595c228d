import { describe, it, expect } from 'vitest';
import ts from 'typescript';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../src/paths.js';
import * as api from '../src/index.js';
import * as internal from '../src/internal.js';
import * as jobs from '../src/jobs/index.js';
import * as tf from '../src/tf.js';
import { randomImages, tinyNet } from './helpers.js';

/** Exports of a module with their doc comments, as TypeScript resolves them (re-exports followed to their declarations). */
function documentedExports(file: string): Map<string, string> {
  const path = join(PROJECT_ROOT, file);
  const program = ts.createProgram([path], {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
  });
  const checker = program.getTypeChecker();
  const module = checker.getSymbolAtLocation(program.getSourceFile(path)!)!;
  return new Map(
    checker.getExportsOfModule(module).map((e) => {
      const s = e.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(e) : e;
      return [e.name, ts.displayPartsToString(s.getDocumentationComment(checker)).trim()];
    }),
  );
}

describe('the public API (uap) and the internals (uap/internal)', () => {
  it('every export of the public API (uap, uap/jobs) has a doc comment where it is declared', () => {
    for (const entry of ['src/index.ts', 'src/jobs/index.ts']) {
      const docs = documentedExports(entry);
      expect(docs.size, entry).toBeGreaterThan(entry === 'src/index.ts' ? 60 : 30);
      expect([...docs].filter(([, doc]) => !doc).map(([name]) => `${entry}: ${name}`)).toEqual([]);
    }
  }, 120_000);

  it('uap/internal holds the whole public API (uap and uap/jobs) and more; the public API holds none of the internals', () => {
    for (const name of [...Object.keys(api), ...Object.keys(jobs)]) expect(internal, name).toHaveProperty(name);
    // The parts and the jobs are apart: no job in uap, no part in uap/jobs.
    expect(Object.keys(api).filter((n) => /Job$/.test(n) || n in jobs)).toEqual([]);
    for (const name of [
      'exportOnnx',
      'runPasses',
      'Rng',
      'encodeNpy',
      'loadModel',
      'studioHandler',
      'candidateGradientsLoop',
      'localExecutor',
    ]) {
      expect(internal, name).toHaveProperty(name);
      expect(api, name).not.toHaveProperty(name);
    }
  });

  it("keeps 0.1's names working beside the new ones (every job is <command>Job; Algorithm 1 is named so; a Backend)", () => {
    expect(jobs.runCompute).toBe(jobs.computeJob);
    expect(jobs.runEvaluate).toBe(jobs.evaluateJob);
    expect(jobs.runAccuracy).toBe(jobs.accuracyJob);
    expect(api.tfjsEngine).toBe(api.tfjsBackend);
    expect(api.computeUniversal).toBe(api.computeAlgorithm1);
    expect(api.UNIVERSAL_DEFAULTS).toBe(api.ALGORITHM1_DEFAULTS);
  });
});

describe('the library in a host application', () => {
  it('plain batches (or tensors of the exported tf, through batchOfTensor) feed forwardLogits and vjp, as the model computes them', async () => {
    const model = tinyNet([4, 4, 1], 3);
    const pixels = Float32Array.from({ length: 32 }, (_, i) => (i * 37) % 256);
    const x = api.tf.tensor4d(pixels, [2, 4, 4, 1]);
    const batch = api.batchOf(pixels, [4, 4, 1]);
    expect(batch.n).toBe(2);
    const logits = await api.forwardLogits(model, batch);
    expect([...logits]).toEqual([...(model.logits(x) as tf.Tensor).dataSync()]);
    expect([...(await api.forwardLogits(model, api.batchOfTensor(x)))]).toEqual([...logits]);
    const dy = Float32Array.from([1, 0, -1, 0, 1, 0]);
    const { dx } = await api.vjp(model, batch, dy);
    expect(dx).toBeInstanceOf(Float32Array);
    expect(dx.length).toBe(2 * 1 * 4 * 4 * 1); // [images, cotangents, H, W, C]
    const reference = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(model.logits(t as tf.Tensor4D), tf.tensor2d(dy, [2, 3]))))(x);
    expect(Math.max(...dx.map((v, i) => Math.abs(v - reference.dataSync()[i])))).toBeLessThan(1e-5);
    expect(api.vjpRows).toBe(api.vjp); // the deprecated name, until 1.0
    expect(api.candidateGradientRows).toBe(api.candidateGradients);
    reference.dispose();
    x.dispose();
    model.dispose();
  });
  it('evaluatePerturbation refuses a missing or misshapen v instead of scoring the clean images against themselves', async () => {
    const model = tinyNet([4, 4, 1], 3);
    const X = randomImages(4, [4, 4, 1]);
    await expect(api.evaluatePerturbation(model, X, null as never)).rejects.toThrow(
      /evaluatePerturbation: v must be a tf\.Tensor3D of the model's input shape \[4,4,1\], got null/,
    );
    const wrong = tf.zeros([4, 4, 3]) as tf.Tensor3D;
    await expect(api.evaluatePerturbation(model, X, wrong)).rejects.toThrow(/got \[4,4,3\]/);
    wrong.dispose();
    model.dispose();
  });

  it("after initBackend, the host's own uncaught errors end as Node ends them (exit 1, the host's stack), not exit 7 from tf-backend-wasm", () => {
    const script = `import { initBackend } from ${JSON.stringify(join(PROJECT_ROOT, 'dist', 'src', 'index.js'))};
await initBackend('wasm');
setTimeout(() => { throw new Error('the host application failed'); }, 0);`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/Error: the host application failed/);
    expect(r.stderr).not.toMatch(/tf-backend-wasm/);
  });
});
