import { describe, it, expect } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { headline, readKept, RESULT_ROWS, resultsTable } from '../scripts/results-docs.js';

const block = (text: string, name: string) => new RegExp(`<!-- ${name}:begin -->\\n([\\s\\S]*?)\\n<!-- ${name}:end -->`).exec(text)?.[1];

describe("the README's results come from kept runs, not from typing", () => {
  it('its results table and the picture caption are the rendering of docs/results/ (npm run docs:results regenerates them)', () => {
    const readme = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8');
    expect(block(readme, 'results')).toBe(resultsTable());
    expect(block(readme, 'headline')).toBe(headline());
    // Every row has its kept run, made by the row's command as it stands: a row without figures would
    // silently drop out, and one whose command changed would show another run's figures.
    for (const r of RESULT_ROWS) {
      const kept = readKept(r.id);
      expect(kept, r.id).toBeDefined();
      expect([kept!.command, kept!.args], r.id).toEqual([r.command, r.args]);
    }
  });

  it("renders a kept run's figures as percentages of its metrics.json, and leaves out rows never run", () => {
    const dir = mkdtempSync(join(tmpdir(), 'uap-results-'));
    const metrics = {
      run: { passes: 3, seconds: 12.4 },
      onX: { images: 1000, foolingRate: 0.9251 },
      onVal: { images: 1300, foolingRate: 0.5 },
      randomNoiseOnVal: { sameLp: { norm: 'inf', mean: 0.25 }, sameL2: { norm: 2, mean: 0.125 } },
    };
    const kept = { id: 'imagenet-sgd', command: 'x', args: [], date: '2026-12-06T00:00:00Z', cores: 2, kind: 'compute', metrics };
    writeFileSync(join(dir, 'imagenet-sgd.json'), JSON.stringify(kept));
    const table = resultsTable(dir).split('\n');
    expect(table).toHaveLength(5); // header, rule, the one kept row, blank, the source line
    expect(table[2]).toBe(
      '| MobileNet v1 0.25, Linf 10, SGD-UAP | 1000 images, 3 pass(es) (12 s) | **50.0%** (1300 images) | 92.5% | 25.0% | 12.5% | `uap compute -m mobilenet_v1_0.25_224 --method sgd` |',
    );
    expect(table[4]).toContain('runs of 2026-12-06 on 2 cores');
    expect(headline(dir)).toBe(''); // no kept ImageNet demo: no caption figures
  });
});
