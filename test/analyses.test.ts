import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { foolingGraph, graphToDot, dotToSvg } from '../src/analysis/graph.js';
import { transferMarkdown, transferSource, transferSpec, type TransferResult } from '../src/analysis/transfer.js';
import { vegaLiteToSvg } from '../src/report/plots.js';

const CLI = resolve('dist/src/cli/main.js');
const uap = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 300_000 });

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
    expect(g.dominant.map((d) => [d.name, d.received, d.inDegree])).toEqual([['dog', 3, 2], ['owl', 2, 1]]);
    expect(g.dominant[0].share).toBeCloseTo(0.6, 9);
    expect(g.components).toEqual([[0, 1, 2]]);
  });
  it('writes DOT that Graphviz (wasm) lays out as SVG, dominant labels filled', async () => {
    const dot = graphToDot(g, (i) => ['cat', 'dog', 'owl', 'fox'][i], 1);
    expect(dot).toMatch(/n0 -> n1/);
    expect(dot).toMatch(/n1 \[label="dog", style="rounded,filled"/);
    expect(dot).not.toMatch(/n3/); // fox is never fooled
    const svg = await dotToSvg(dot);
    expect(svg).toMatch(/<svg/);
    expect(svg).toMatch(/>dog</);
  });
});

describe('transfer matrix outputs', () => {
  const t: TransferResult = {
    sources: [{ name: 'a (run)', craftedOn: 'a', file: 'x.npy' }, { name: 'b', craftedOn: 'b', file: 'y.npy' }],
    models: ['a', 'b'],
    foolingRate: [[0.9, 0.25], [0.125, 0.5]],
    images: [10, 10],
    data: ['d', 'd'],
  };
  it('a Markdown table with the crafted-on cells in bold', () => {
    expect(transferMarkdown(t)).toBe('| crafted on \\ tested on | a | b |\n|---|---|---|\n| a (run) | **90.0%** | 25.0% |\n| b | 12.5% | **50.0%** |\n');
  });
  it('a Vega-Lite heatmap rendered to SVG', async () => {
    const svg = await vegaLiteToSvg(transferSpec(t));
    expect(svg).toMatch(/^<svg/);
    expect(svg).toMatch(/90%/);
  });
  it('names what it expected for a bad source', () => {
    expect(() => transferSource('/no/such/run')).toThrow(/\/no\/such\/run: not found \(expected a run directory or a \.npy perturbation\)/);
    expect(() => transferSource(mkdtempSync(join(tmpdir(), 'uap-empty-')))).toThrow(/no perturbation\.npy in this run directory/);
  });
});

describe('uap transfer and uap graph from the command line (embedded model)', () => {
  it('the diagonal of the transfer matrix is the run\'s own validation fooling rate; the graph counts the same fooled images', () => {
    const run = mkdtempSync(join(tmpdir(), 'uap-run-'));
    const c = uap('compute', '--method', 'sgd', '--xi', '40', '--max-passes', '3', '-o', run);
    expect(c.status, c.stderr).toBe(0);
    const metrics = JSON.parse(readFileSync(join(run, 'metrics.json'), 'utf8'));
    const out = mkdtempSync(join(tmpdir(), 'uap-tr-'));
    const t = uap('transfer', run, '-o', out);
    expect(t.status, t.stderr).toBe(0);
    const tj = JSON.parse(readFileSync(join(out, 'transfer.json'), 'utf8'));
    expect(tj.models).toEqual(['fashion']);
    expect(tj.foolingRate[0][0]).toBeCloseTo(metrics.onVal.foolingRate, 9);
    expect(existsSync(join(out, 'transfer.svg'))).toBe(true);
    const g = uap('graph', '--run', run);
    expect(g.status, g.stderr).toBe(0);
    const gj = JSON.parse(readFileSync(join(run, 'graph.json'), 'utf8'));
    expect(gj.fooled / gj.images).toBeCloseTo(metrics.onVal.foolingRate, 9);
    expect(readFileSync(join(run, 'graph.svg'), 'utf8')).toMatch(/<svg/);
  });
});
