import { describe, it, expect, beforeAll } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '../src/tf.js';
import { initBackend } from '../src/engine/backend.js';
import { Rng } from '../src/math/random.js';
import { drawPerturbations, applyDraws } from '../src/defence/sampling.js';
import { enableWasmTraining } from '../src/engine/tfjs/wasmTraining.js';
import { runFinetune, FINETUNE_DEFAULTS, type DefenceResult, type EpochRecord, type RoundRecord } from '../src/defence/finetune.js';
import { finetuneOptions } from '../src/defence/finetune/options.js';
import { readTrainingLog, resumedRounds, writeRecords } from '../src/defence/finetune/records.js';
import { localExecutor, type Executor } from '../src/run/executor.js';
import { loadClassifier } from '../src/import/load.js';
import { UsageError } from '../src/errors.js';
import { EMBEDDED_DIR } from '../src/paths.js';
import { buildReport } from '../src/report/html.js';
import { uatEpoch } from '../src/defence/uat.js';
import { loadTrainable } from '../src/defence/trainable.js';
import { findCard } from '../src/import/load.js';
import { assetsDir } from '../src/paths.js';
import { readNpy } from '../src/io/npy.js';
import { randomImages } from './helpers.js';

const backend = await initBackend();

describe('perturbation sampling for fine-tuning', () => {
  it('perturbs about the given share of images, with members drawn uniformly and magnitudes inside the range', () => {
    const draws = drawPerturbations(20000, 4, new Rng(3), { probability: 0.5, scale: [0.5, 1.5] });
    const hit = draws.filter((d) => d !== null);
    expect(hit.length / draws.length).toBeGreaterThan(0.48);
    expect(hit.length / draws.length).toBeLessThan(0.52);
    for (let m = 0; m < 4; m++) expect(hit.filter((d) => d!.member === m).length / hit.length).toBeCloseTo(0.25, 1);
    expect(Math.min(...hit.map((d) => d!.scale))).toBeGreaterThanOrEqual(0.5);
    expect(Math.max(...hit.map((d) => d!.scale))).toBeLessThanOrEqual(1.5);
    const mean = hit.reduce((s, d) => s + d!.scale, 0) / hit.length;
    expect(mean).toBeCloseTo(1, 1);
  });

  it('the same seed gives the same draws; probability 0 and 1 are exact', () => {
    const o = { probability: 0.3, scale: [0.2, 0.9] as [number, number] };
    expect(drawPerturbations(50, 3, new Rng(9), o)).toEqual(drawPerturbations(50, 3, new Rng(9), o));
    expect(drawPerturbations(50, 3, new Rng(9), { ...o, probability: 0 }).every((d) => d === null)).toBe(true);
    expect(drawPerturbations(50, 3, new Rng(9), { ...o, probability: 1 }).every((d) => d !== null)).toBe(true);
  });

  it('adds scale x member and clips to [0, 255]; an image without a draw is unchanged', () => {
    const x = tf.tensor4d([100, 250, 5, 7, 100, 250, 5, 7], [2, 2, 2, 1]);
    const pool = tf.tensor4d([10, 10, -10, -10, 4, 4, 4, 4], [2, 2, 2, 1]);
    const out = applyDraws(x, pool, [{ member: 0, scale: 2 }, null]);
    expect(Array.from(out.dataSync())).toEqual([120, 255, 0, 0, 100, 250, 5, 7]);
    const out2 = applyDraws(x, pool, [
      { member: 1, scale: 0.5 },
      { member: 0, scale: 1 },
    ]);
    expect(Array.from(out2.dataSync())).toEqual([102, 252, 7, 9, 110, 255, 0, 0]);
    tf.dispose([x, pool, out, out2]);
  });
});

describe('training kernels on wasm', () => {
  /** Filter and input gradients of conv2d and depthwise conv2d on the current backend. */
  function gradients(
    kind: 'conv' | 'depthwise' | 'maxpool' | 'maxpool3s2' | 'maxpool2s1',
    strides: number,
    pad: 'same' | 'valid',
  ): number[] {
    return tf.tidy(() => {
      const x = tf.randomNormal([3, 9, 10, 4], 0, 1, 'float32', 1) as tf.Tensor4D;
      if (kind.startsWith('maxpool')) {
        // Negative inputs too: wasm's own MaxPoolGrad goes wrong on them (overlapping windows too).
        const window = kind === 'maxpool3s2' ? 3 : kind === 'maxpool2s1' ? 2 : strides;
        const g = tf.grad((xx: tf.Tensor) => {
          const y = tf.maxPool(xx as tf.Tensor4D, window, strides, pad);
          return tf.sum(tf.mul(y, tf.sin(tf.range(0, y.size).reshape(y.shape))));
        })(x);
        return [...g.dataSync()];
      }
      const f = tf.randomNormal(kind === 'conv' ? [3, 3, 4, 5] : [3, 3, 4, 1], 0, 1, 'float32', 2) as tf.Tensor4D;
      const [gx, gf] = tf.grads((xx: tf.Tensor, ff: tf.Tensor) => {
        const y =
          kind === 'conv'
            ? tf.conv2d(xx as tf.Tensor4D, ff as tf.Tensor4D, strides, pad)
            : tf.depthwiseConv2d(xx as tf.Tensor4D, ff as tf.Tensor4D, strides, pad);
        return tf.sum(tf.mul(y, tf.sin(tf.range(0, y.size).reshape(y.shape))));
      })([x, f]);
      return [...gx.dataSync(), ...gf.dataSync()];
    });
  }

  it('filter gradients (which wasm lacks) and max-pool gradients (which it gets wrong) match the cpu backend', async () => {
    expect(tf.getBackend()).toBe('wasm');
    enableWasmTraining();
    const cases = [
      ['conv', 1, 'same'],
      ['conv', 2, 'same'],
      ['conv', 2, 'valid'],
      ['depthwise', 1, 'same'],
      ['depthwise', 2, 'same'],
      ['depthwise', 2, 'valid'],
      ['maxpool', 2, 'same'],
      ['maxpool', 2, 'valid'],
      ['maxpool', 3, 'same'],
      ['maxpool3s2', 2, 'same'],
      ['maxpool2s1', 1, 'same'],
    ] as const;
    const onWasm = cases.map(([k, s, p]) => gradients(k, s, p));
    await tf.setBackend('cpu');
    try {
      cases.forEach(([k, s, p], i) => {
        const ref = gradients(k, s, p);
        const scale = Math.max(...ref.map(Math.abs));
        const err = Math.max(...ref.map((v, j) => Math.abs(v - onWasm[i][j])));
        expect(err / scale, `${k} stride ${s} ${p}`).toBeLessThan(1e-5);
      });
    } finally {
      await tf.setBackend('wasm');
    }
    const before = tf.memory().numTensors;
    gradients('depthwise', 2, 'same');
    expect(tf.memory().numTensors).toBe(before); // the registered kernels leak nothing
  });
});

describe('uap finetune (library) on the embedded model', () => {
  const out = mkdtempSync(join(tmpdir(), 'uap-defence-'));
  let res: DefenceResult;
  const job = {
    model: 'fashion',
    backend,
    out,
    limit: 200,
    valLimit: 200,
    method: 'sgd' as const,
    attack: { norm: 'inf' as const, xi: 40, maxPasses: 4 },
    options: { poolSize: 4, epochs: 2, learningRate: 1e-3, maxAccuracyDrop: 0.2 },
  };

  beforeAll(async () => {
    res = await runFinetune(job);
  });

  it('writes the rounds table: the fresh UAP fools less after fine-tuning, at a bounded clean-accuracy cost', () => {
    expect(res.rounds.map((r) => r.round)).toEqual([0, 1]);
    const [before, after] = res.rounds;
    expect(before.foolingRate).toBeGreaterThan(0.3);
    expect(after.foolingRate).toBeLessThan(before.foolingRate - 0.05);
    expect(after.cleanAccuracy).toBeGreaterThan(before.cleanAccuracy - 0.2);
    expect(after.epochs.filter((e) => e.kept).length).toBe(2);
    expect(after.previousFoolingRate).not.toBeNull();
    expect(readFileSync(join(out, 'defence.md'), 'utf8')).toContain('| 1 |');
  });

  it('saves a TF.js model whose weights changed, with a card that loads like any model', async () => {
    const card = JSON.parse(readFileSync(join(out, 'round-1', 'model', 'card.json'), 'utf8')) as { name: string; labels: string[] };
    expect(card.name).toBe('fashion-mnist-cnn-finetuned-r1');
    expect(card.labels).toHaveLength(10);
    const original = new Float32Array(readFileSync(join(EMBEDDED_DIR, 'model', 'weights.bin')).buffer.slice(0));
    const tuned = new Float32Array(readFileSync(join(out, 'round-1', 'model', 'weights.bin')).buffer.slice(0));
    expect(tuned.length).toBe(original.length);
    const changed = tuned.filter((v, i) => v !== original[i]).length;
    expect(changed / tuned.length).toBeGreaterThan(0.5);
    const m = await loadClassifier(join(out, 'round-1', 'model', 'card.json'), { backend });
    expect(m.numClasses).toBe(10);
    m.dispose();
  });

  it('the report gets a defence section with the rounds table and curve', async () => {
    const html = await buildReport([out]);
    expect(html).toContain('Defence: fine-tuning on universal perturbations');
    expect(html).toContain('0 (original)');
    expect(html).toMatch(/<svg[^>]*>/);
    expect(html).toContain('fresh UAP, round 1');
  });

  it('--resume of a finished run redoes nothing and gives the same table; other settings are refused', async () => {
    const again = await runFinetune({ ...job, resume: true });
    expect(again.rounds).toEqual(res.rounds);
    await expect(runFinetune({ ...job, resume: true, options: { ...job.options, epochs: 3 } })).rejects.toThrow(/other settings/);
  });

  it('an interrupted run resumes where it stopped: the pool and the finished epoch are kept, not redone', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'uap-defence-resume-'));
    const abort = new AbortController();
    const first: number[] = [];
    await expect(
      runFinetune(
        { ...job, out: dir },
        {
          signal: abort.signal,
          onEpoch: (_r, e) => {
            first.push(e.loss);
            abort.abort(); // Ctrl-C during the second epoch
          },
        },
      ),
    ).rejects.toThrow(/interrupted/);
    const poolFile = join(dir, 'round-1', 'pool', 'member-0.npy');
    const poolBefore = statSync(poolFile).mtimeMs;
    const resumed = await runFinetune({ ...job, out: dir, resume: true });
    expect(resumed.rounds.map((r) => r.round)).toEqual([0, 1]);
    const kept = resumed.rounds[1].epochs.filter((e) => e.kept);
    expect(kept).toHaveLength(2);
    expect(resumed.rounds[1].epochs[0].loss).toBe(first[0]);
    expect(statSync(poolFile).mtimeMs).toBe(poolBefore);
  });

  it('a fresh run into a folder holding an older one replaces it (its pool, epochs and model are not reused)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'uap-defence-again-'));
    const small = { ...job, out: dir, options: { ...job.options, poolSize: 2, epochs: 1 } };
    await runFinetune(small);
    const member = () => readFileSync(join(dir, 'round-1', 'pool', 'member-0.npy'));
    const first = member();
    const again = await runFinetune({ ...small, options: { ...small.options, seed: 7 } });
    expect(member().equals(first)).toBe(false);
    expect(again.rounds[1].epochs).toHaveLength(1);
  });

  it('pool members crafted on another executor are the ones crafted here, asked for all at once from the model as named', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'uap-defence-remote-'));
    const asked: { spec: unknown; seeds: number[] }[] = [];
    // An executor that crafts here but takes the whole pool at once, as a queue's does, and says where it is.
    const exec: Executor = {
      ...localExecutor,
      where: 'elsewhere',
      craft: async (on, runs, method, o) => {
        asked.push({ spec: on.place?.model, seeds: runs.map((r) => r.options.seed) });
        const made = await localExecutor.craft({ model: on.model }, runs, method);
        made.forEach((r, i) => o?.onRun?.(i, r));
        return made;
      },
    };
    await runFinetune({ ...job, out: dir, options: { ...job.options, poolSize: 2, epochs: 1 } }, { exec });
    expect(asked).toEqual([{ spec: { spec: 'fashion', card: undefined }, seeds: [1001, 1002] }]);
    for (const m of ['member-0.npy', 'member-1.npy'])
      expect(readFileSync(join(dir, 'round-1', 'pool', m)).equals(readFileSync(join(out, 'round-1', 'pool', m)))).toBe(true);
  });

  it('refuses models it cannot train and runs without a validation set, in one line', async () => {
    await expect(runFinetune({ ...job, model: 'mobilenet_v1_0.25_128_quant' })).rejects.toThrow(/fine-tuning needs a TF.js LayersModel/);
    await expect(runFinetune({ ...job, val: 'none' })).rejects.toThrow(UsageError);
    await expect(runFinetune({ ...job, options: { epochs: 0 } })).rejects.toThrow(/^epochs: expected an integer >= 1/);
  });
});

describe('universal adversarial training (Shafahi et al.) on the embedded model', () => {
  const out = mkdtempSync(join(tmpdir(), 'uap-uat-'));
  const job = {
    model: 'fashion',
    backend,
    out,
    limit: 200,
    valLimit: 200,
    method: 'sgd' as const,
    attack: { norm: 'inf' as const, xi: 40, maxPasses: 4 },
    options: { defence: 'uat' as const, epochs: 6, learningRate: 1e-3, maxAccuracyDrop: 0.2 },
  };
  let res: DefenceResult;
  beforeAll(async () => {
    res = await runFinetune(job);
  });

  it('one step: the weights descend and the perturbation ascends by exactly its step (sign steps for Linf), inside the ball', async () => {
    const card = findCard('fashion');
    const t = await loadTrainable(card, assetsDir());
    try {
      const X = randomImages(8, [28, 28, 1], 3);
      const delta = tf.variable(tf.zeros([28, 28, 1]), true);
      const before = t.variables.map((v) => v.dataSync().slice());
      await uatEpoch(
        t,
        X,
        Int32Array.from({ length: 8 }, (_, i) => i % 10),
        delta,
        { batchSize: 8, norm: 'inf', xi: 5, step: 2 },
        tf.train.adam(1e-3),
        1,
        () => {},
      );
      const d = delta.dataSync();
      expect(d.every((x) => x === 0 || Math.abs(x) === 2)).toBe(true);
      expect(d.filter((x) => x !== 0).length).toBeGreaterThan(d.length / 2);
      expect(t.variables.some((v, i) => v.dataSync().some((x, j) => x !== before[i][j]))).toBe(true);
      for (let e = 0; e < 3; e++)
        await uatEpoch(t, X, new Int32Array(8), delta, { batchSize: 4, norm: 'inf', xi: 5, step: 2 }, tf.train.adam(1e-3), e, () => {});
      expect(Math.max(...delta.dataSync().map(Math.abs))).toBeLessThanOrEqual(5);
      delta.dispose();
    } finally {
      t.dispose();
    }
  });

  it("lowers a fresh UAP's fooling rate at a bounded clean-accuracy cost, and keeps its perturbation inside the ball", () => {
    const [before, after] = res.rounds;
    expect(before.foolingRate).toBeGreaterThan(0.3);
    expect(after.foolingRate).toBeLessThan(before.foolingRate - 0.1);
    expect(after.cleanAccuracy).toBeGreaterThan(before.cleanAccuracy - 0.2);
    expect(existsSync(join(out, 'round-1', 'pool'))).toBe(false);
    const delta = readNpy(join(out, 'round-1', 'model', 'uat-perturbation.npy'));
    const max = Math.max(...Array.from(delta.data, Math.abs));
    expect(max).toBeGreaterThan(0);
    expect(max).toBeLessThanOrEqual(40 * (1 + 1e-6));
    expect(readFileSync(join(out, 'defence.md'), 'utf8')).toContain('universal adversarial training');
  });

  it('an interrupted run resumes from the last saved epoch, its perturbation included', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'uap-uat-resume-'));
    const abort = new AbortController();
    await expect(
      runFinetune({ ...job, out: dir, options: { ...job.options, epochs: 2 } }, { signal: abort.signal, onEpoch: () => abort.abort() }),
    ).rejects.toThrow(/interrupted/);
    const saved = join(dir, 'round-1', 'model', 'uat-perturbation.npy');
    expect(readNpy(saved).data.some((x) => x !== 0)).toBe(true);
    const resumed = await runFinetune({ ...job, out: dir, options: { ...job.options, epochs: 2 }, resume: true });
    expect(resumed.rounds[1].epochs.filter((e) => e.kept)).toHaveLength(2);
  });

  it('refuses an unknown defence by field', async () => {
    await expect(runFinetune({ ...job, options: { defence: 'other' as 'uat' } })).rejects.toThrow(/^defence: expected pool or uat/);
  });
});

describe('fine-tuning stages: options and the records a resume reads back', () => {
  it('refuses a bad option by the field it names, a nested one by its path', () => {
    expect(finetuneOptions()).toEqual(FINETUNE_DEFAULTS);
    expect(() => finetuneOptions({ batchSize: 0 })).toThrow(/^batchSize: expected an integer >= 1, got 0$/);
    expect(() => finetuneOptions({ sampling: { probability: 1.5, scale: [0.5, 1.5] } })).toThrow(
      /^sampling\.probability: expected a number in \[0, 1\], got 1.5$/,
    );
    expect(() => finetuneOptions({ sampling: { probability: 0.5, scale: [2, 1] } })).toThrow(
      /^sampling\.scale: expected \[lo, hi\] with 0 <= lo <= hi, got 2,1$/,
    );
  });

  const config = { model: 'm', method: 'sgd', attack: { norm: 'inf', xi: 10 }, finetune: FINETUNE_DEFAULTS, images: 1, valImages: 1 };
  const epoch = (e: number): EpochRecord => ({
    epoch: e,
    learningRate: 1e-3,
    loss: 0.5,
    cleanAccuracy: 0.8,
    poolFoolingRate: 0.3,
    seconds: 1,
    kept: true,
  });
  const round = (r: number): RoundRecord => ({
    round: r,
    card: r ? `round-${r}/model/card.json` : 'fashion',
    cleanAccuracy: 0.8,
    foolingRate: 0.5,
    foolingRateOnX: 0.6,
    previousFoolingRate: r ? 0.4 : null,
    epochs: r ? [epoch(1)] : [],
    seconds: 3,
  });
  /** A run folder whose defence.json holds `rounds` (records as a previous run left them, sound or not). */
  const saved = (rounds: unknown[]) => {
    const out = mkdtempSync(join(tmpdir(), 'uap-defence-records-'));
    writeFileSync(join(out, 'defence.json'), JSON.stringify({ config, rounds, out }));
    return out;
  };

  it('reads back the rounds it wrote; refuses another configuration, an unreadable file, and a malformed record by its field', () => {
    const out = mkdtempSync(join(tmpdir(), 'uap-defence-records-'));
    const rounds = [round(0), round(1)];
    writeRecords({ config, rounds, out });
    expect(resumedRounds(out, config)).toEqual(rounds);
    expect(readFileSync(join(out, 'defence.md'), 'utf8')).toContain('| 1 | 80.0% |');
    expect(() => resumedRounds(out, { ...config, images: 2 })).toThrow(/other settings/);
    writeFileSync(join(out, 'defence.json'), '{"config": ');
    expect(() => resumedRounds(out, config)).toThrow(/defence\.json: unreadable/);
    const refused = (rounds: unknown[]) => {
      try {
        resumedRounds(saved(rounds), config);
      } catch (e) {
        expect(e).toBeInstanceOf(UsageError);
        return (e as Error).message;
      }
      return 'accepted';
    };
    expect(refused([{ ...round(0), cleanAccuracy: 'x' }])).toMatch(/rounds\[0\]\.cleanAccuracy is missing or malformed \("x"\)/);
    expect(refused([round(0), round(2)])).toMatch(/rounds\[1\]\.round is missing or malformed \(2\)/);
    const { kept: _k, ...noKept } = epoch(1);
    expect(refused([round(0), { ...round(1), epochs: [noKept] }])).toMatch(
      /rounds\[1\]\.epochs\[0\]\.kept is missing or malformed \(absent\)/,
    );
    expect(refused([round(0), null])).toMatch(/rounds\[1\] is missing or malformed/);
  });

  it("reads a round's epoch log back checked: none yet, a diverged epoch's null loss, a malformed one refused", () => {
    const dir = mkdtempSync(join(tmpdir(), 'uap-defence-log-'));
    expect(readTrainingLog(dir)).toBeUndefined();
    const diverged = { ...epoch(1), loss: null, kept: false };
    writeFileSync(join(dir, 'training.json'), JSON.stringify({ epochs: [diverged, epoch(1)] }));
    expect(readTrainingLog(dir)).toEqual([diverged, epoch(1)]);
    writeFileSync(join(dir, 'training.json'), JSON.stringify({ epochs: [{ ...epoch(1), learningRate: -1 }] }));
    expect(() => readTrainingLog(dir)).toThrow(
      /^resume: .*training\.json: epochs\[0\]\.learningRate is missing or malformed \(-1\); start afresh/,
    );
  });
});
