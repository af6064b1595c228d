import { describe, it, expect } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeNpy } from '../src/io/npy.js';
import { uapCli } from './helpers.js';
import { PROJECT_ROOT } from '../src/paths.js';
import { runWarnings } from '../src/report/warnings.js';

const uap = (...args: string[]) => uapCli(args);
const uapWithEnv = (env: Record<string, string>, ...args: string[]) => uapCli(args, { env });
const tmp = () => mkdtempSync(join(tmpdir(), 'uap-cli-'));

/** Bad input: exit code 2 and exactly one line on stderr naming the problem, no stack trace. */
async function expectUsageError(args: string[], pattern: RegExp) {
  const r = await uap(...args);
  const errLines = r.stderr.split('\n').filter((l) => l.startsWith('uap: error') || l.startsWith('error:'));
  expect(r.status, r.stderr).toBe(2);
  expect(errLines.length).toBe(1);
  expect(errLines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

describe('CLI', () => {
  it('has --help on every command', async () => {
    for (const c of [
      'compute',
      'evaluate',
      'accuracy',
      'transfer',
      'graph',
      'baseline',
      'sweep-size',
      'normals',
      'report',
      'reproduce',
      'finetune',
      'demo',
    ]) {
      const r = await uap(c, '--help');
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/Usage: uap/);
    }
    expect((await uap('compute', '--help')).stdout).toMatch(/--xi <x>/);
  });
  it('finetune: a model TF.js cannot train, and a bad magnitude range', async () => {
    await expectUsageError(['finetune', '-m', 'mobilenet_v1_0.25_128_quant'], /fine-tuning needs a TF.js LayersModel .*TFLite/);
    await expectUsageError(['finetune', '--magnitude', '2,1'], /--magnitude 2,1: expected LO,HI/);
  });
  it('a model of its own label space that the embedded images do not fit is refused without --data (never scored on Fashion-MNIST in silence)', async () => {
    const stem = ['-m', 'test/fixtures/onnx/stem-op17.onnx', '--mean', '123.675,116.28,103.53', '--std', '58.395,57.12,57.375'];
    const why =
      /--data: model stem-op17 takes 32x32x3 images with 10 classes of its own; the default images \(the embedded Fashion-MNIST set, 28x28x1, 10 classes\) do not fit it: pass its images as --data \(and --val\), or --label-space imagenet/;
    await expectUsageError(['compute', ...stem, '--limit', '4'], why);
    const v = join(tmp(), 'v.npy');
    writeNpy(v, { data: new Float32Array(32 * 32 * 3), shape: [32, 32, 3] });
    await expectUsageError(['evaluate', ...stem, '--perturbation', v], /--data: model stem-op17 takes 32x32x3 images/);
    // With its own images named, the same model runs (the check is of the defaults only).
    const r = await uap(
      'compute',
      ...stem,
      '--data',
      'fashion:craft',
      '--val',
      'none',
      '--limit',
      '4',
      '--max-passes',
      '1',
      '-o',
      join(tmp(), 'run'),
    );
    expect(r.status, r.stderr).toBe(0);
  });
  it('negative xi', async () => expectUsageError(['compute', '--xi', '-3'], /--xi -3: expected a positive number/));
  it('unknown norm', async () => expectUsageError(['compute', '--norm', '3'], /--norm 3: expected 2 or inf/));
  it('non-numeric batch size', async () =>
    expectUsageError(['compute', '--batch-size', 'many'], /--batch-size many: expected an integer in \[1, 4096\]/));
  it('unknown flag', async () => expectUsageError(['compute', '--bogus'], /unknown option '--bogus'/));
  it('a file that is not a TFLite model', async () => {
    const f = join(tmp(), 'bad.tflite');
    writeFileSync(f, 'not a model at all');
    await expectUsageError(['accuracy', '--model', f], /bad.tflite: not a TFLite model/);
  });
  it('unknown target label', () =>
    expectUsageError(['compute', '--target', 'Giraffe'], /--target Giraffe: no class of model fashion-mnist-cnn has that name/));
  it('target index out of range', () => expectUsageError(['compute', '--target', '10'], /--target 10: the model has 10 classes/));
  it('unknown method', () => expectUsageError(['compute', '--method', 'magic'], /--method.*magic.*algorithm1, sgd/));
  it('bad SGD step decay', () =>
    expectUsageError(['compute', '--method', 'sgd', '--lr-decay', '2'], /--lr-decay 2: expected a number in \(0, 1\]/));
  it('baseline with bad factors', () =>
    expectUsageError(
      ['baseline', '--perturbation', 'assets/fashion-mnist/README.md', '--factors', '1,x'],
      /--factors 1,x: expected comma-separated numbers >= 0/,
    ));
  it('sweep-size with bad sizes', () =>
    expectUsageError(['sweep-size', '--sizes', '10,0'], /--sizes 10,0: expected comma-separated integers >= 1/));
  it('normals with bad dims', () => expectUsageError(['normals', '--dims', 'a'], /--dims a: expected comma-separated integers >= 1/));
  it('graph without a perturbation', () => expectUsageError(['graph'], /graph: give --run DIR, or --model with --perturbation FILE/));
  it('transfer of a missing run', () => expectUsageError(['transfer', '/no/such/run'], /\/no\/such\/run: not found/));
  it('missing model', async () => expectUsageError(['compute', '--model', 'no-such-model'], /--model no-such-model: not found/));
  it('empty data folder', async () => expectUsageError(['compute', '--data', tmp()], /no images found/));
  it('--out that is a file', async () => {
    const f = join(tmp(), 'file');
    writeFileSync(f, 'x');
    await expectUsageError(['compute', '--out', f], /--out .*: is a file, expected a folder/);
  });
  it('labels file that is a folder', async () =>
    expectUsageError(['compute', '--labels', tmp()], /labels file .*: a folder, expected a regular file/));
  it('missing data folder', async () =>
    expectUsageError(['compute', '--data', '/nonexistent/x'], /data \/nonexistent\/x: folder not found/));
  it('evaluate without a perturbation', async () => expectUsageError(['evaluate'], /--perturbation <file>: required/));
  it('the perturbation given twice (new and old flag)', async () =>
    expectUsageError(['evaluate', '--perturbation', 'a.npy', '-v', 'b.npy'], /--perturbation and -v: give the perturbation once/));
  it('-v is the version alone, and the old short form of --perturbation after a command (with a warning)', async () => {
    const version = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')).version;
    for (const flag of ['-v', '-V', '--version']) {
      const r = await uap(flag);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout.trim()).toBe(version);
    }
    const old = await uap('evaluate', '-v', '/nonexistent/v.npy');
    expect(old.status).toBe(2);
    expect(old.stderr).toMatch(/-v is the old short form of --perturbation and will go; write --perturbation \/nonexistent\/v\.npy/);
    expect(old.stderr).toMatch(/perturbation \/nonexistent\/v\.npy: file not found/);
  });
  it('missing perturbation file', async () =>
    expectUsageError(['evaluate', '--perturbation', '/nonexistent/v.npy'], /perturbation \/nonexistent\/v.npy: file not found/));
  it('perturbation of the wrong image size for the model', async () => {
    const f = join(tmp(), 'v.npy');
    writeNpy(f, { data: new Float32Array(5 * 5 * 3), shape: [5, 5, 3] });
    await expectUsageError(
      ['evaluate', '--perturbation', f],
      /shape \(5, 5, 3\) has no axis of 1 channel at either end \(the model takes 28x28x1 images\)/,
    );
  });
  it('bad model card', async () => {
    const dir = tmp();
    writeFileSync(join(dir, 'card.json'), JSON.stringify({ name: 'x', format: 'layers', model: 'model.json', inputShape: [0, 2, 3] }));
    await expectUsageError(['compute', '--model', dir], /model card .*card\.json: "inputShape" must be/);
  });
  it('resume together with a warm start', async () =>
    expectUsageError(['compute', '--resume', '--init', 'v.npy', '--out', tmp()], /--resume and --init exclude each other/));
  it('resume without a checkpoint', async () => expectUsageError(['compute', '--resume', '--out', tmp()], /--resume: no checkpoint in/));
  it('a model.json with no card: a clear error, or a card made from flags that scores like the real card', async () => {
    const dir = tmp();
    for (const f of ['model.json', 'weights.bin']) copyFileSync(join('assets/fashion-mnist/model', f), join(dir, f));
    await expectUsageError(['accuracy', '-m', dir], /no card\.json beside the model; .* --input-shape and --num-classes/);
    const data = ['-d', 'assets/fashion-mnist/images/val', '--json'];
    const fromFlags = await uap(
      'accuracy',
      '-m',
      join(dir, 'model.json'),
      '--input-shape',
      '28x28x1',
      '--num-classes',
      '10',
      '--scale',
      String(1 / 255),
      '--logits-layer',
      'logits',
      ...data,
    );
    expect(fromFlags.status, fromFlags.stderr).toBe(0);
    const fromCard = await uap('accuracy', '-m', 'fashion', ...data);
    expect(JSON.parse(fromFlags.stdout).top1).toBe(JSON.parse(fromCard.stdout).top1);
    expect(JSON.parse(fromCard.stdout).top1).toBeGreaterThan(0.85);
    await expectUsageError(['accuracy', '-m', dir, '--input-shape', '28x28'], /--input-shape 28x28: expected HxWxC/);
  });
  it('the ImageNet demo and models explain what to pass when the assets folder is absent', async () => {
    for (const args of [
      ['demo', '--imagenet'],
      ['compute', '-m', 'mobilenet_v1_0.25_224'],
    ]) {
      const r = await uapWithEnv({ UAP_ASSETS: '/nonexistent-assets' }, ...args);
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/\/nonexistent-assets.*(--assets|UAP_ASSETS)/);
    }
  });
});

describe('run warnings (CLI summary and report)', () => {
  type S = Parameters<typeof runWarnings>[0];
  const rate = (foolingRate: number, images: number) => ({ foolingRate, images }) as unknown as S['onX'];
  const noise = (mean: number, norm: 2 | 'inf') => ({ mean, norm, radius: 10, min: mean, max: mean, draws: 3 });
  const random = (linf: number, l2: number) => ({ sameLp: noise(linf, 'inf'), sameL2: noise(l2, 2) }) as unknown as S['randomOnVal'];
  it('v no better than random noise of the same norm is said', () => {
    const w = runWarnings({ onX: rate(0.22, 200), onVal: rate(0.2, 500), randomOnVal: random(0.25, 0.1) });
    expect(w).toHaveLength(1);
    expect(w[0]).toMatch(/fools 20\.0% of the validation images, no more than random noise of the same Linf norm \(25\.0%\)/);
  });
  it('X and validation rates further apart than their intervals allow are said; close ones are not', () => {
    expect(runWarnings({ onX: rate(1, 200), onVal: rate(0.66, 500), randomOnVal: random(0.26, 0.1) })[0]).toMatch(
      /fools 100\.0% of X but 66\.0% of the validation images/,
    );
    expect(runWarnings({ onX: rate(0.68, 200), onVal: rate(0.66, 500), randomOnVal: random(0.26, 0.1) })).toEqual([]);
    expect(runWarnings({ onX: rate(0.9, 200), onVal: undefined, randomOnVal: undefined })).toEqual([]);
  });
});

describe('docs/cli-reference.md', () => {
  it("is every command's --help as the commands define it now (npm run docs:cli regenerates it)", async () => {
    const { cliReference, optionsTable } = await import('../src/cli/reference.js');
    expect(readFileSync(join(PROJECT_ROOT, 'docs', 'cli-reference.md'), 'utf8')).toBe(cliReference());
    // docs/cli.md's table of crafting options is the schema's.
    const guide = readFileSync(join(PROJECT_ROOT, 'docs', 'cli.md'), 'utf8');
    expect(/<!-- attack-options:begin -->\n([\s\S]*?)\n<!-- attack-options:end -->/.exec(guide)?.[1]).toBe(optionsTable());
  });
});

describe('defaults that never destroy a run', () => {
  it('compute without --out writes a new runs/compute-DATE-TIME each time (a second run keeps the first); --resume takes the newest; the embedded model gets Linf 40', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'uap-runs-'));
    const args = ['compute', '--limit', '8', '--val-limit', '8', '--max-passes', '1'];
    const first = await uapCli(args, { cwd });
    const second = await uapCli(args, { cwd });
    const folder = (r: { stderr: string }) => /^run folder: (runs\/compute-\d{8}-\d{6}(-\d+)?)$/m.exec(r.stderr)?.[1];
    expect(first.status, first.stderr).toBe(0);
    expect(second.status, second.stderr).toBe(0);
    expect(folder(first)).toBeDefined();
    expect(folder(second)).not.toBe(folder(first));
    for (const r of [first, second]) expect(readFileSync(join(cwd, folder(r)!, 'metrics.json'), 'utf8')).toContain('"xi": 40');
    const resumed = await uapCli([...args, '--resume'], { cwd });
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(folder(resumed)).toBe(folder(second));
    const none = await uapCli([...args, '--resume'], { cwd: mkdtempSync(join(tmpdir(), 'uap-runs-')) });
    expect(none.status).toBe(2);
    expect(none.stderr.trim().split('\n').pop()).toBe(
      'uap: error: --resume: no earlier run of uap compute under runs/ to resume; name its folder with --out',
    );
  }, 300_000);
});

describe('--json', () => {
  it('evaluate and compute print their figures as one JSON document on stdout (the logs stay on stderr)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'uap-json-'));
    const c = await uapCli(['compute', '--limit', '8', '--val-limit', '8', '--max-passes', '1', '--json', '-o', join(dir, 'run')]);
    expect(c.status, c.stderr).toBe(0);
    const metrics = JSON.parse(c.stdout) as { xi: number; onX: { foolingRate: number } };
    expect(metrics).toEqual(JSON.parse(readFileSync(join(dir, 'run', 'metrics.json'), 'utf8')));
    const e = await uapCli(['evaluate', '--perturbation', join(dir, 'run', 'perturbation.npy'), '--limit', '16', '--json']);
    expect(e.status, e.stderr).toBe(0);
    const m = JSON.parse(e.stdout) as { images: number; foolingRate: number };
    expect(m.images).toBe(16);
    expect(m.foolingRate).toBeGreaterThanOrEqual(0);
  }, 300_000);
});

describe('progress when piped', () => {
  it('plain lines without bar glyphs or empty lines: a start, the end and one every 10 s per pass', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'uap-pipe-'));
    const c = await uapCli(['compute', '--method', 'algorithm1', '--max-passes', '3', '--val-limit', '8', '-o', join(dir, 'run')]);
    expect(c.status, c.stderr).toBe(0);
    const lines = c.stderr.split('\n');
    const progress = lines.filter((l) => /^pass \d+\/3: \d+%, \d+\/200 images, ETA /.test(l));
    expect(progress.length).toBeGreaterThanOrEqual(3);
    // A start and an end line per pass, and one per 10 s it lasted (its time is on its summary line): never a line per batch.
    const passSeconds = lines.flatMap((l) => /^pass \d+: fooling rate on X .*, (\d+\.\d) s$/.exec(l)?.[1] ?? []).map(Number);
    expect(passSeconds).toHaveLength(3);
    expect(progress.length).toBeLessThanOrEqual(passSeconds.reduce((n, s) => n + 2 + Math.ceil(s / 10), 0));
    expect(c.stderr).not.toMatch(/[█░]/);
    expect(lines.slice(0, -1).filter((l) => l.trim() === '')).toEqual([]);
  }, 300_000);
  it('the plain format of a bar', async () => {
    const { plainProgressFormat } = await import('../src/cli/console.js');
    expect(plainProgressFormat('pass {pass} |{bar}| {value}/{total} images | ETA {eta_formatted}')).toBe(
      'pass {pass}: {percentage}%, {value}/{total} images, ETA {eta_formatted}',
    );
  });
});
