import { describe, it, expect } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { foolingGraph, graphToDot, dotToSvg } from '../src/analysis/graph.js';
import {
  diagonalOrder,
  transferMarkdown,
  transferSource,
  transferSpec,
  transferSpread,
  type TransferResult,
} from '../src/analysis/transfer.js';
import { wilsonInterval } from '../src/math/interval.js';
import { vegaLiteToSvg } from '../src/report/plots.js';
import * as tf from '../src/tf.js';
import { normSweep, sweepSpec, type NormSweep } from '../src/analysis/baseline.js';
import { noiseOfNorm, randomPerturbation } from '../src/math/noise.js';
import { lpNorm } from '../src/math/lp.js';
import { predictSet, foolingRate } from '../src/evaluation/scoring.js';
import { tinyNet, randomImages, linearClassifier, uapCli } from './helpers.js';
import { normalsAnalysis } from '../src/analysis/normals.js';
import { sizeSweep } from '../src/analysis/sizes.js';
import { SGD_DEFAULTS } from '../src/attacks/sgd.js';
import { OWN_FORMAT } from '../src/perturbation/format.js';

const uap = (...args: string[]) => uapCli(args);

describe('fooling graph', () => {
  // clean -> adv: 0->1, 0->1, 0->2, 1->1 (kept), 1->2, 2->1, 2->2 (kept), 3->3 (kept)
  const clean = Int32Array.from([0, 0, 0, 1, 1, 2, 2, 3]);
  const adv = Int32Array.from([1, 1, 2, 1, 2, 1, 2, 3]);
  const g = foolingGraph(clean, adv, (i) => ['cat', 'dog', 'owl', 'fox'][i]);

  it('has one edge per label that loses images, to where most of them go', () => {
    expect(g.fooled).toBe(5);
    expect(g.edges).toEqual([
      { from: 0, to: 1, count: 2, fraction: 2 / 3 },
      { from: 1, to: 2, count: 1, fraction: 1 },
      { from: 2, to: 1, count: 1, fraction: 1 },
    ]);
  });
  it('ranks dominant labels by the share of fooled images they receive, with their in-degree', () => {
    expect(g.dominant.map((d) => [d.name, d.received, d.inDegree])).toEqual([
      ['dog', 3, 2],
      ['owl', 2, 1],
    ]);
    expect(g.dominant[0].share).toBeCloseTo(0.6, 9);
    expect(g.components).toEqual([[0, 1, 2]]);
  });
  it('writes DOT that Graphviz (wasm) lays out as SVG, dominant labels filled', async () => {
    const dot = graphToDot(g, (i) => ['cat', 'dog', 'owl', 'fox'][i], 1);
    expect(dot).toMatch(/n0 -> n1 \[.*label="2"/); // 2 cats become dogs: the count is on the edge
    expect(dot).toMatch(/n1 \[label="dog", fontsize=18\.0, style="rounded,filled"/); // in-degree 2 of 2: the largest
    expect(dot).toMatch(/n0 \[label="cat", fontsize=9\.0\]/); // nothing flows into cat
    expect(dot).toMatch(/label="arrow: clean label -> label with v\\n\(the number of images on it\)\\norange: the 1 dominant labels/);
    expect(dot).not.toMatch(/n3/); // fox is never fooled
    const svg = await dotToSvg(dot);
    expect(svg).toMatch(/<svg/);
    expect(svg).toMatch(/>dog</);
    expect(svg).toMatch(/>arrow: clean label/);
  });
});

describe('norm sweep (universal vs random noise)', () => {
  it('noise of each kind has exactly the asked norm', () => {
    for (const kind of ['sign', 'gaussian'] as const)
      for (const p of [2, 'inf'] as const) expect(lpNorm(noiseOfNorm(kind, [5, 5, 3], p, 17, 3), p)).toBeCloseTo(17, 3);
  });
  it("scales v and draws noise at every radius; at 0 nothing is fooled; at 1 the universal rate is v's own", async () => {
    await tf.setBackend('cpu');
    const model = tinyNet([6, 6, 3], 6);
    const X = randomImages(20, [6, 6, 3]);
    const v = randomPerturbation([6, 6, 3], 'inf', 30, 5);
    const s = await normSweep(model, X, v, 'inf', { factors: [0, 1, 2], draws: 2 });
    expect(s.points).toHaveLength(9);
    expect(s.vNorm).toBeCloseTo(30, 4);
    expect(s.points.filter((p) => p.radius === 0).every((p) => p.mean === 0)).toBe(true);
    const clean = await predictSet(model, X, null);
    const own = foolingRate(clean, await predictSet(model, X, v));
    expect(s.points.find((p) => p.kind === 'universal' && Math.abs(p.radius - 30) < 1e-3)!.mean).toBeCloseTo(own, 9);
    for (const p of s.points) expect(p.min <= p.mean && p.mean <= p.max).toBe(true);
  });
});

describe('per-image DeepFool curves of the norm sweep', () => {
  it("each image's own DeepFool step rescaled: nothing at radius 0, every image past its boundary at a large radius", async () => {
    await tf.setBackend('cpu');
    const shape: [number, number, number] = [4, 4, 1];
    const model = linearClassifier(
      [Array.from({ length: 16 }, (_, i) => Math.sin(i)), Array.from({ length: 16 }, (_, i) => Math.cos(i))],
      [0, 0],
      shape,
    );
    const X = randomImages(10, shape, 2);
    const v = randomPerturbation(shape, 2, 50, 1);
    const s = await normSweep(model, X, v, 2, { factors: [0, 1, 100], draws: 1, deepfool: true });
    const per = s.points.filter((p) => p.kind === 'per-image DeepFool');
    expect(per.map((p) => p.mean)).toEqual([0, expect.any(Number), 1]);
    // A two-class linear model: every DeepFool step points along +-(w1 - w0), so their sum does too.
    expect(s.points.filter((p) => p.kind === 'sum of DeepFool perturbations')).toHaveLength(3);
  });
});

describe('size of X', () => {
  it('crafts on nested seeded subsets of the asked sizes and scores each on the same validation set', async () => {
    await tf.setBackend('cpu');
    const model = tinyNet([6, 6, 3], 6);
    const X = randomImages(30, [6, 6, 3], 4);
    const V = randomImages(20, [6, 6, 3], 9);
    const sub = X.subset([3, 7]);
    expect(Array.from(sub.batch([1]).dataSync())).toEqual(Array.from(X.batch([7]).dataSync()));
    const opts = { ...SGD_DEFAULTS, norm: 'inf' as const, xi: 40, maxPasses: 2, delta: 0, batchSize: 8 };
    const points = await sizeSweep(model, X, V, 'sgd', opts, { sizes: [5, 20, 99] });
    expect(points.map((p) => p.size)).toEqual([5, 20]); // 99 > |X| is dropped
    for (const p of points) expect(p.valFoolingRate).toBeGreaterThanOrEqual(0);
    // The same size and seed reproduces the same rate.
    const again = await sizeSweep(model, X, V, 'sgd', opts, { sizes: [20] });
    expect(again[0].valFoolingRate).toBe(points[1].valFoolingRate);
    expect(points[0].spread).toBeNull();
    expect(points[0].valInterval).toEqual(wilsonInterval(points[0].valFoolingRate, V.size));
  });
  it('with several seeds: one run per size and seed, the first seed as a single-seed sweep, mean and spread over them', async () => {
    await tf.setBackend('cpu');
    const model = tinyNet([6, 6, 3], 6);
    const X = randomImages(30, [6, 6, 3], 4);
    const V = randomImages(20, [6, 6, 3], 9);
    const opts = { ...SGD_DEFAULTS, norm: 'inf' as const, xi: 40, maxPasses: 2, delta: 0, batchSize: 8, seed: 3 };
    const seen: number[] = [];
    const points = await sizeSweep(model, X, V, 'sgd', opts, { sizes: [10], seed: 3, seeds: 3, onRun: (r) => seen.push(r.seed) });
    expect(seen).toEqual([3, 4, 5]);
    const [p] = points;
    expect(p.runs.map((r) => r.seed)).toEqual([3, 4, 5]);
    const one = await sizeSweep(model, X, V, 'sgd', opts, { sizes: [10], seed: 3 });
    expect(p.runs[0].valFoolingRate).toBe(one[0].valFoolingRate);
    const rates = p.runs.map((r) => r.valFoolingRate);
    const mean = rates.reduce((a, b) => a + b, 0) / 3;
    expect(p.valFoolingRate).toBeCloseTo(mean, 12);
    expect(p.spread!.seeds).toBe(3);
    expect(p.spread!.sd).toBeCloseTo(Math.sqrt(rates.reduce((a, x) => a + (x - mean) ** 2, 0) / 2), 12);
    expect([p.spread!.min, p.spread!.max]).toEqual([Math.min(...rates), Math.max(...rates)]);
  });
});

describe('DeepFool normals', () => {
  it('of a two-class linear classifier all lie on one line: singular values (sqrt(n), 0, ...), while random vectors spread', async () => {
    await tf.setBackend('cpu');
    const shape: [number, number, number] = [8, 8, 1];
    const w0 = Array.from({ length: 64 }, (_, i) => Math.sin(i));
    const w1 = Array.from({ length: 64 }, (_, i) => Math.cos(i * 0.7));
    const model = linearClassifier([w0, w1], [0, 0], shape);
    const X = randomImages(12, shape, 3);
    const r = await normalsAnalysis(model, X, randomImages(40, shape, 5), { xi: 300, dims: [1], draws: 2 });
    expect(r.normals).toBe(12);
    expect(r.singular[0]).toBeCloseTo(Math.sqrt(12), 3);
    expect(r.singular[1]).toBeLessThan(1e-3);
    expect(r.randomSingular[1]).toBeGreaterThan(0.3); // 12 random unit vectors in 64 dimensions are far from one line
    // A random vector from the normals' span moves every image straight across the boundary.
    expect(r.subspace[0].mean).toBeGreaterThanOrEqual(r.unconstrained.mean);
  });
});

describe('transfer matrix outputs', () => {
  const t: TransferResult = {
    sources: [
      { name: 'a (run)', craftedOn: 'a', file: 'x.npy', format: OWN_FORMAT },
      { name: 'b', craftedOn: 'b', file: 'y.npy', format: OWN_FORMAT },
    ],
    models: ['a', 'b'],
    foolingRate: [
      [0.9, 0.25],
      [0.125, 0.5],
    ],
    interval: [
      [wilsonInterval(0.9, 10), wilsonInterval(0.25, 10)],
      [wilsonInterval(0.125, 10), wilsonInterval(0.5, 10)],
    ],
    spread: [],
    images: [10, 10],
    data: ['d', 'd'],
  };
  it('a Markdown table with the crafted-on cells in bold and each 95% interval', () => {
    expect(transferMarkdown(t)).toBe(
      '| crafted on \\ tested on | a | b |\n|---|---|---|\n' +
        '| a (run) | **90.0%** (59.6-98.2) | 25.0% (8.1-55.8) |\n| b | 12.5% (2.6-43.2) | **50.0%** (23.7-76.3) |\n' +
        "\nCells: fooling rate on the column's validation images (10), 95% Wilson interval in brackets.\n",
    );
  });
  it('puts every crafted-on cell on the diagonal, whatever order rows and columns come in', () => {
    const src = (name: string, craftedOn: string | null) => ({ name, craftedOn, file: `${name}.npy`, format: OWN_FORMAT });
    const { sources, models } = diagonalOrder([src('other', null), src('c1', 'c'), src('a1', 'a'), src('c2', 'c')], ['x', 'a', 'y', 'c']);
    expect(models).toEqual(['a', 'c', 'x', 'y']);
    expect(sources.map((s) => s.name)).toEqual(['a1', 'c1', 'c2', 'other']);
  });
  it('the spread over perturbations crafted on one model: mean, sample standard deviation and range per column', () => {
    const src = (name: string, craftedOn: string) => ({ name, craftedOn, file: `${name}.npy`, format: OWN_FORMAT });
    const spread = transferSpread(
      [src('a1', 'a'), src('a2', 'a'), src('a3', 'a'), src('b1', 'b')],
      ['a', 'b'],
      [
        [0.5, 0.1],
        [0.6, 0.2],
        [0.7, 0.3],
        [0.4, 0.9],
      ],
    );
    expect(spread.map((x) => [x.craftedOn, x.testedOn, x.runs])).toEqual([
      ['a', 'a', 3],
      ['a', 'b', 3],
    ]);
    expect(spread[0].mean).toBeCloseTo(0.6, 12);
    expect(spread[0].sd).toBeCloseTo(0.1, 12);
    expect([spread[1].min, spread[1].max]).toEqual([0.1, 0.3]);
    const md = transferMarkdown({ ...t, spread: spread.map((x) => ({ ...x, testedOn: x.testedOn })) });
    expect(md).toContain('| a (3) | 60.0% ± 10.0 (50.0-70.0) | 20.0% ± 10.0 (10.0-30.0) |');
  });
  it('a Vega-Lite heatmap rendered to SVG', async () => {
    const svg = await vegaLiteToSvg(transferSpec(t));
    expect(svg).toMatch(/^<svg/);
    expect(svg).toMatch(/90%/);
  });
  it('names what it expected for a bad source', () => {
    expect(() => transferSource('/no/such/run')).toThrow(
      /\/no\/such\/run: not found \(expected a run directory or a \.npy \/ \.npz perturbation\)/,
    );
    expect(() => transferSource(mkdtempSync(join(tmpdir(), 'uap-empty-')))).toThrow(/no perturbation\.npy in this run directory/);
  });
});

describe('uap transfer and uap graph from the command line (embedded model)', () => {
  it("the diagonal of the transfer matrix is the run's own validation fooling rate; the graph counts the same fooled images", async () => {
    const run = mkdtempSync(join(tmpdir(), 'uap-run-'));
    const c = await uap('compute', '--method', 'sgd', '--xi', '40', '--max-passes', '3', '-o', run);
    expect(c.status, c.stderr).toBe(0);
    const metrics = JSON.parse(readFileSync(join(run, 'metrics.json'), 'utf8'));
    const out = mkdtempSync(join(tmpdir(), 'uap-tr-'));
    const t = await uap('transfer', run, '-o', out, '--json');
    expect(t.status, t.stderr).toBe(0);
    const tj = JSON.parse(readFileSync(join(out, 'transfer.json'), 'utf8'));
    expect(JSON.parse(t.stdout)).toEqual(tj); // --json prints the file it wrote, nothing else
    expect(tj.models).toEqual(['fashion']);
    expect(tj.foolingRate[0][0]).toBeCloseTo(metrics.onVal.foolingRate, 9);
    expect(existsSync(join(out, 'transfer.svg'))).toBe(true);
    const g = await uap('graph', '--run', run, '--json');
    expect(g.status, g.stderr).toBe(0);
    const gj = JSON.parse(readFileSync(join(run, 'graph.json'), 'utf8'));
    expect(JSON.parse(g.stdout)).toEqual(gj);
    expect(gj.fooled / gj.images).toBeCloseTo(metrics.onVal.foolingRate, 9);
    expect(readFileSync(join(run, 'graph.svg'), 'utf8')).toMatch(/<svg/);
    const b = await uap('baseline', '--run', run, '--factors', '0,1', '--draws', '1');
    expect(b.status, b.stderr).toBe(0);
    const bj = JSON.parse(readFileSync(join(run, 'baseline.json'), 'utf8'));
    expect(bj.points.find((p: { kind: string; radius: number }) => p.kind === 'universal' && p.radius > 0).mean).toBeCloseTo(
      metrics.onVal.foolingRate,
      9,
    );
    expect(readFileSync(join(run, 'baseline.svg'), 'utf8')).toMatch(/<svg/);
    const sweep = mkdtempSync(join(tmpdir(), 'uap-sweep-'));
    const w = await uap('sweep-size', '--method', 'sgd', '--sizes', '10,40', '--max-passes', '2', '--val-limit', '50', '-o', sweep);
    expect(w.status, w.stderr).toBe(0);
    const sj = JSON.parse(readFileSync(join(sweep, 'sweep-size.json'), 'utf8'));
    expect(sj.points.map((p: { size: number }) => p.size)).toEqual([10, 40]);
    expect(sj.validationImages).toBe(50);
  });
});

describe('the baseline plot', () => {
  it('lists in its legend only the curves drawn, in their line colours; the bands stay out of it', async () => {
    const point = (kind: string, radius: number, mean: number) => ({ kind, radius, mean, min: mean - 0.01, max: mean + 0.01 });
    const sweep = {
      norm: 'inf',
      vNorm: 10,
      images: 50,
      points: [point('universal', 0, 0), point('universal', 10, 0.6), point('gaussian', 0, 0), point('gaussian', 10, 0.05)],
    } as unknown as NormSweep;
    const spec = sweepSpec(sweep, 'test') as unknown as {
      layer: { encoding: Record<string, { scale?: { domain: string[]; range: string[] }; legend?: unknown }> }[];
    };
    expect(spec.layer[1].encoding.color.scale).toEqual({ domain: ['universal', 'gaussian'], range: ['#d62728', '#7f7f7f'] });
    expect(spec.layer[0].encoding.fill.legend).toBeNull();
    const svg = await vegaLiteToSvg(sweepSpec(sweep, 'test'));
    expect(svg).toContain('gaussian');
    expect(svg).not.toContain('random signs');
    expect(svg).not.toContain('per-image DeepFool');
  });
});

describe('the analyses of a run score the images the run was scored on', () => {
  it('graph and baseline --run take its --val-sample; report of one run writes into it', async () => {
    const run = mkdtempSync(join(tmpdir(), 'uap-run-'));
    const c = await uap('compute', '--method', 'sgd', '--xi', '40', '--max-passes', '1', '--val-sample', '60', '--seed', '3', '-o', run);
    expect(c.status, c.stderr).toBe(0);
    const metrics = JSON.parse(readFileSync(join(run, 'metrics.json'), 'utf8'));
    const g = await uap('graph', '--run', run, '--json');
    expect(g.status, g.stderr).toBe(0);
    const gj = JSON.parse(readFileSync(join(run, 'graph.json'), 'utf8'));
    expect(JSON.parse(g.stdout)).toEqual(gj);
    expect(gj.images).toBe(60);
    expect(gj.fooled / gj.images).toBeCloseTo(metrics.onVal.foolingRate, 9);
    // An explicit --limit still wins.
    const limited = await uap('graph', '--run', run, '--limit', '20', '-o', mkdtempSync(join(tmpdir(), 'uap-g-')));
    expect(limited.stdout).toMatch(/of 20 images fooled/);
    const b = await uap('baseline', '--run', run, '--factors', '1', '--draws', '1');
    expect(b.status, b.stderr).toBe(0);
    const bj = JSON.parse(readFileSync(join(run, 'baseline.json'), 'utf8'));
    expect(bj.points.find((p: { kind: string }) => p.kind === 'universal').mean).toBeCloseTo(metrics.onVal.foolingRate, 9);
    rmSync(join(run, 'report.html'), { force: true });
    const r = await uap('report', run);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`written: ${join(run, 'report.html')}`);
    expect(existsSync(join(run, 'report.html'))).toBe(true);
  });
});

describe('uap reproduce --quick (embedded model)', () => {
  it("runs every experiment and writes the report and a summary beside the paper's numbers", async () => {
    const out = mkdtempSync(join(tmpdir(), 'uap-repro-'));
    const r = await uap('reproduce', '--quick', '--models', 'fashion', '--max-passes', '3', '-o', out, '--json');
    expect(r.status, r.stderr).toBe(0);
    const summary = readFileSync(join(out, 'summary.md'), 'utf8');
    // --json: the figures summary.md is made of, as one document.
    const j = JSON.parse(r.stdout) as {
      runs: { model: string; norm: unknown; summary: { onVal: { foolingRate: number } } }[];
      files: string[];
    };
    expect(j.runs.map((x) => [x.model, x.norm])).toEqual([
      ['fashion', 2],
      ['fashion', 'inf'],
    ]);
    expect(summary).toContain(`${(j.runs[1].summary.onVal.foolingRate * 100).toFixed(1)}% (`);
    expect(j.files).toContain(join(out, 'summary.md'));
    for (const heading of ['Table 1', 'Table 2', 'Size of X', 'Universal vs random noise', "DeepFool normals' subspace"])
      expect(summary).toContain(heading);
    const ci = String.raw`\d+\.\d% \(\d+\.\d-\d+\.\d\)`;
    expect(summary).toMatch(new RegExp(String.raw`\| fashion \| ${ci} \| ${ci} \| ${ci} \| ${ci} \|`));
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    expect((html.match(/<section>/g) ?? []).length).toBe(6); // the runs compared, 2 runs, transfer, sweep-size, normals
    expect(html).toContain('<h2>Runs compared</h2>');
    for (const f of [
      'fashion-linf/graph.svg',
      'fashion-l2/baseline.svg',
      'transfer/transfer.svg',
      'sweep-size/sweep-size.svg',
      'normals/normals.svg',
    ])
      expect(existsSync(join(out, f))).toBe(true);
  });
});
