import { describe, it, expect, beforeAll } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { uapCli } from './helpers.js';
import { readRunFiles } from '../src/run/files.js';
import { OWN_FORMAT } from '../src/perturbation/format.js';

const uap = (...args: string[]) => uapCli(args);
type Json = Record<string, unknown>;
const CHROMIUM = '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium)
  console.warn(`SKIPPED the headless-browser check of the report: ${CHROMIUM} not found (.ci/run installs Debian's chromium)`);

describe('uap report', () => {
  let run: string;
  let html: string;
  let file: string;
  beforeAll(async () => {
    run = mkdtempSync(join(tmpdir(), 'uap-rep-'));
    for (const args of [
      ['compute', '--method', 'sgd', '--xi', '40', '--max-passes', '3', '-o', run],
      ['graph', '--run', run],
      ['baseline', '--run', run, '--factors', '0,0.5,1,2', '--draws', '2'],
    ]) {
      const r = await uap(...args);
      expect(r.status, r.stderr).toBe(0);
    }
    file = join(mkdtempSync(join(tmpdir(), 'uap-html-')), 'report.html');
    const r = await uap('report', run, '-o', file);
    expect(r.status, r.stderr).toBe(0);
    html = readFileSync(file, 'utf8');
  });

  it('reads the run folder through one typed, checked reader: a damaged metrics.json or config.json is one line naming the file and field', async () => {
    const files = readRunFiles(run)!;
    expect(files.config).toMatchObject({ model: 'fashion-mnist-cnn', modelSpec: 'fashion', method: 'sgd', norm: 'inf', xi: 40 });
    expect(files.metrics.run.history).toHaveLength(files.metrics.run.passes);
    expect(files.metrics.validationDetail?.perClass.length).toBe(10);
    for (const [name, damage, message] of [
      ['metrics.json', (m: Json) => ((m.onX as Json).foolingRate = 'high'), /metrics\.json: "onX\.foolingRate" is not a rate in \[0, 1\]/],
      [
        'metrics.json',
        (m: Json) => (((m.run as Json).history as Json[])[0].pass = 7),
        /metrics\.json: run\."history"\[0\]\.pass must be 1/,
      ],
      [
        'metrics.json',
        (m: Json) => (((m.validationDetail as Json).perClass as unknown[])[2] = null),
        /"validationDetail\.perClass\[2\]" is not an object/,
      ],
      ['config.json', (c: Json) => (c.norm = 3), /config\.json: "norm" is not 2 or "inf"/],
    ] as [string, (o: Json) => void, RegExp][]) {
      const copy = mkdtempSync(join(tmpdir(), 'uap-damaged-'));
      for (const f of ['config.json', 'metrics.json']) {
        const o = JSON.parse(readFileSync(join(run, f), 'utf8')) as Json;
        if (f === name) damage(o);
        writeFileSync(join(copy, f), JSON.stringify(o));
      }
      expect(() => readRunFiles(copy), String(message)).toThrow(message);
      const r = await uap('report', copy, '-o', join(copy, 'r.html'));
      expect(r.status).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(message);
    }
  });

  it('is one self-contained page: images inline, plots as inline SVG, nothing fetched', async () => {
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).toMatch(/<img src="data:image\/png;base64,/);
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//);
    expect((html.match(/<svg/g) ?? []).length).toBeGreaterThanOrEqual(3); // pass curve, graph, baseline
    expect(html).toMatch(/Fooling graph/);
    expect(html).toMatch(/Fooling rate against norm/);
    expect(html).toMatch(/SGD-UAP/);
  });

  it('keeps every plot of the page as a standalone SVG file beside it (vector, for a paper)', () => {
    const folder = join(file, '..', 'report-figures');
    const files = readdirSync(folder).sort();
    const name = basename(run);
    expect(files).toEqual([`${name}-baseline.svg`, `${name}-graph.svg`, `${name}-passes.svg`, `${name}-per-class.svg`].sort());
    for (const f of files) {
      const svg = readFileSync(join(folder, f), 'utf8');
      expect(svg).toMatch(/^<svg[^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
      expect(html).toContain(svg.slice(0, 200)); // the same drawing as the page's
    }
  });

  it('gives each rate its 95% interval and the clean -> perturbed accuracy; warns when v is no better than noise', async () => {
    const metrics = JSON.parse(readFileSync(join(run, 'metrics.json'), 'utf8'));
    const pctText = (x: number) => `${(x * 100).toFixed(1)}%`;
    expect(html).toContain(`${pctText(metrics.onVal.foolingRate)} (95% CI `);
    expect(html).toContain(`${pctText(metrics.onVal.cleanAccuracy)} -> ${pctText(metrics.onVal.perturbedAccuracy)}`);
    // The same run with v scaled to nothing fools fewer images than noise: the page says so.
    const weak = mkdtempSync(join(tmpdir(), 'uap-weak-'));
    const c = await uap('compute', '--method', 'sgd', '--xi', '1', '--max-passes', '1', '--val-limit', '60', '-o', weak);
    expect(c.status, c.stderr).toBe(0);
    expect(c.stderr).toMatch(/warning: v fools .* no more than random noise of the same Linf norm/);
    const r = await uap('report', weak);
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(join(weak, 'report.html'), 'utf8')).toMatch(/<p class="warning">warning: v fools .* no more than random noise/);
  });

  it('reports per class, confusions, confidence, the spectrum and provenance, consistent with predictions.csv', async () => {
    const metrics = JSON.parse(readFileSync(join(run, 'metrics.json'), 'utf8'));
    const lines = readFileSync(join(run, 'predictions.csv'), 'utf8').trim().split('\n');
    expect(lines[0]).toBe(
      'file,true_label,clean_label,clean_name,clean_confidence,perturbed_label,perturbed_name,perturbed_confidence,clean_label_confidence_after,fooled',
    );
    const rows = lines.slice(1).map((l) => l.split(','));
    expect(rows.length).toBe(metrics.onVal.images);
    // The CSV, the per-class table and the overall rate tell one story.
    const fooled = rows.filter((r) => r[r.length - 1] === '1').length;
    expect(fooled / rows.length).toBeCloseTo(metrics.onVal.foolingRate, 10);
    const perClass = metrics.validationDetail.perClass as {
      class: number;
      images: number;
      fooled: number;
      lo: number;
      hi: number;
      rate: number;
    }[];
    expect(perClass.reduce((n, c) => n + c.images, 0)).toBe(rows.length);
    for (const c of perClass) {
      const mine = rows.filter((r) => Number(r[1]) === c.class);
      expect([c.images, c.fooled]).toEqual([mine.length, mine.filter((r) => r[r.length - 1] === '1').length]);
      expect(c.lo).toBeLessThanOrEqual(c.rate);
      expect(c.hi).toBeGreaterThanOrEqual(c.rate);
    }
    const conf = metrics.validationDetail.confidence;
    expect(conf.cleanLabelConfidenceAfter).toBeLessThan(conf.cleanConfidence);
    expect(conf.marginAfter).toBeLessThan(conf.marginBefore);
    expect(html).toContain('Per class, confusions and confidence');
    expect(html).toContain('fooling rate per class (images in brackets), 95% Wilson intervals');
    expect(html).toContain('2-D Fourier amplitude of v');
    expect(html).toMatch(/<summary>Provenance<\/summary>.*uap compute|<summary>Provenance<\/summary>/s);
    const config = JSON.parse(readFileSync(join(run, 'config.json'), 'utf8'));
    expect(config.provenance.modelSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(config.provenance.command).toContain('compute');
    expect(html).toContain(config.provenance.modelSha256.slice(0, 16));
  });

  it('with --val-per-pass, draws X and validation after every pass; the last pass is the final validation rate', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'uap-vpp-'));
    const c = await uap('compute', '--val-per-pass', '--xi', '30', '--max-passes', '3', '--val-limit', '100', '-o', dir);
    expect(c.status, c.stderr).toBe(0);
    expect(c.stderr).toMatch(/pass 1: fooling rate on X [\d.]+%, on validation [\d.]+%/);
    const m = JSON.parse(readFileSync(join(dir, 'metrics.json'), 'utf8'));
    const history = m.run.history as { valFoolingRate: number }[];
    expect(history.length).toBe(m.run.passes);
    expect(history.every((h) => h.valFoolingRate >= 0 && h.valFoolingRate <= 1)).toBe(true);
    expect(history[history.length - 1].valFoolingRate).toBe(m.onVal.foolingRate);
    const r = await uap('report', dir);
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(join(dir, 'report.html'), 'utf8')).toMatch(
      /fooling rate on validation" role="graphics-symbol" aria-roledescription="line mark"/,
    );
    const none = await uap(
      'compute',
      '--val-per-pass',
      '--val',
      'none',
      '--max-passes',
      '1',
      '-o',
      mkdtempSync(join(tmpdir(), 'uap-vpp-')),
    );
    expect(none.status).toBe(2);
    expect(none.stderr).toMatch(/--val-per-pass: needs a validation set/);
  });

  it('compares several runs in one table and one plot', async () => {
    const other = mkdtempSync(join(tmpdir(), 'uap-rep2-'));
    const c = await uap('compute', '--xi', '20', '--max-passes', '2', '--val-limit', '80', '-o', other);
    expect(c.status, c.stderr).toBe(0);
    const out = join(other, 'both.html');
    const r = await uap('report', run, other, '-o', out);
    expect(r.status, r.stderr).toBe(0);
    const both = readFileSync(out, 'utf8');
    const compared = both.slice(both.indexOf('<h2>Runs compared</h2>'), both.indexOf('</section>'));
    expect(compared).toContain('SGD-UAP');
    expect(compared).toContain('Algorithm 1');
    expect(compared).toContain('fooling rate on X after each pass, one line per run');
    expect((compared.match(/<tr>/g) ?? []).length).toBe(3);
  });

  it('names a folder with nothing to report', async () => {
    const r = await uap('report', mkdtempSync(join(tmpdir(), 'uap-none-')));
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/no run or analysis results here/);
  });

  it.skipIf(!hasChromium)('renders in headless Chromium without errors (screenshot)', async () => {
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox'] });
    try {
      const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
      const errors: string[] = [];
      page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
      page.on('pageerror', (e) => errors.push(String(e)));
      await page.goto(`file://${file}`);
      expect(await page.locator('svg').count()).toBeGreaterThanOrEqual(3);
      const widths = await page.evaluate(() => [...document.images].map((i) => i.naturalWidth));
      expect(widths.length).toBeGreaterThanOrEqual(2);
      expect(widths.every((w) => w > 0)).toBe(true);
      const shot = join(run, 'report.png');
      await page.screenshot({ path: shot, fullPage: true });
      expect(statSync(shot).size).toBeGreaterThan(20_000);
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});

describe('figures a reviewer accepts', () => {
  it('a one-pass run draws its pass curve on whole-number ticks from 0 (it was one dot over "1.000000")', async () => {
    const { rateLines, vegaLiteToSvg } = await import('../src/report/plots.js');
    const svg = await vegaLiteToSvg(rateLines([{ x: 1, rate: 0.4, what: 'fooling rate on X' }], 'pass', undefined, 'fooling rate', true));
    const ticks = [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
    expect(ticks).toContain('0');
    expect(ticks).toContain('1');
    expect(ticks.some((t) => /^\d+\.\d+$/.test(t))).toBe(false);
  });

  it('the per-class plot of a 1000-class set: classes of one or two images left out, the rest by the lower end of their interval', async () => {
    const { plottedClasses, PLOT_MIN_IMAGES } = await import('../src/report/detail.js');
    const { wilsonInterval } = await import('../src/math/interval.js');
    const row = (cls: number, images: number, fooled: number) => {
      const rate = fooled / images;
      const [lo, hi] = wilsonInterval(rate, images);
      return { class: cls, name: `c${cls}`, by: 'true label' as const, images, fooled, rate, lo, hi };
    };
    // 900 classes of one image, all fooled; 100 of 30 images, fooled 10..29 times.
    const rows = [
      ...Array.from({ length: 900 }, (_, i) => row(i, 1, 1)),
      ...Array.from({ length: 100 }, (_, i) => row(900 + i, 30, 10 + (i % 20))),
    ];
    const { shown, sorted, fewImages } = plottedClasses(rows);
    expect(sorted).toBe(true);
    expect(fewImages).toBe(900);
    expect(shown).toHaveLength(40);
    expect(shown.every((r) => r.images >= PLOT_MIN_IMAGES)).toBe(true);
    for (let i = 1; i < shown.length; i++) expect(shown[i - 1].lo).toBeGreaterThanOrEqual(shown[i].lo);
    expect(shown[0].fooled).toBe(29);
    // Ten classes fit: all of them, in index order.
    expect(plottedClasses(rows.slice(0, 10)).shown.map((r) => r.class)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('the transfer heatmap keeps long row names whole (run folder on a second line) and shows each interval', async () => {
    const { transferSpec } = await import('../src/analysis/transfer.js');
    const { vegaLiteToSvg } = await import('../src/report/plots.js');
    const long = 'mobilenet_v2_1.0_224_quant';
    const svg = await vegaLiteToSvg(
      transferSpec({
        sources: [{ name: `${long} (sgd-${long}-linf-seed-0)`, craftedOn: long, file: 'v.npy', format: OWN_FORMAT }],
        models: [long],
        foolingRate: [[0.658]],
        interval: [[[0.631, 0.683]]],
        spread: [],
        images: [1300],
        data: ['d'],
      }),
    );
    const texts = [...svg.matchAll(/<text[^>]*>(.*?)<\/text>/gs)].map((m) => m[1].replace(/<[^>]+>/g, '|'));
    expect(texts.join(' ')).not.toContain('…');
    expect(texts.some((t) => t.includes(`(sgd-${long}-linf-seed-0)`))).toBe(true);
    expect(texts).toContain('66%');
    expect(texts).toContain('63-68');
  });
});
