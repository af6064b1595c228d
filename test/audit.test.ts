import { describe, it, expect, beforeAll } from 'vitest';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { EMBEDDED_DIR } from '../src/paths.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { uapCli } from './helpers.js';
import { parseBudgets, parseDuration, parseRate } from '../src/cli/audit.js';
import { AUDIT_SCHEMA, compareAudits, readAudit, receivedLabels, type AuditResult } from '../src/jobs/audit.js';
import { auditJunit } from '../src/jobs/auditFormats.js';
import { wilsonInterval } from '../src/math/interval.js';

const tmp = (p: string) => mkdtempSync(join(tmpdir(), p));

/** A class folder of two embedded images. */
function twoImages(): string {
  const dir = tmp('uap-audit-two-');
  mkdirSync(join(dir, '00_tshirt_top'));
  const from = join(EMBEDDED_DIR, 'images', 'craft', '00_tshirt_top');
  for (const f of readdirSync(from).slice(0, 2)) copyFileSync(join(from, f), join(dir, '00_tshirt_top', f));
  return dir;
}

/** testcases and failures of a JUnit file, counted by element. */
function junitCounts(xml: string): { tests: number; failures: number; suites: number } {
  return {
    tests: (xml.match(/<testcase /g) ?? []).length,
    failures: (xml.match(/<failure /g) ?? []).length,
    suites: (xml.match(/<testsuite /g) ?? []).length,
  };
}

describe('audit flags', () => {
  it('reads budgets, times and rates, and refuses anything else in one line naming the flag', () => {
    expect(parseBudgets('inf:10, 2:2000')).toEqual([
      { norm: 'inf', xi: 10 },
      { norm: 2, xi: 2000 },
    ]);
    expect([parseDuration('90s'), parseDuration('10m'), parseDuration('1h'), parseDuration('45')]).toEqual([90, 600, 3600, 45]);
    expect([parseRate('50%'), parseRate('0.25'), parseRate('100%')]).toEqual([0.5, 0.25, 1]);
    expect(() => parseBudgets('inf')).toThrow(/--norms inf: "inf" is not NORM:RADIUS/);
    expect(() => parseBudgets('1:10')).toThrow(/--norms 1:10/);
    expect(() => parseBudgets('inf:-3')).toThrow(/--norms inf:-3/);
    expect(() => parseDuration('soon')).toThrow(/--budget soon: expected a time such as 90s/);
    expect(() => parseDuration('0s')).toThrow(/--budget 0s/);
    expect(() => parseRate('150%')).toThrow(/--fail-above 150%: expected a rate/);
  });
});

describe('audit verdicts', () => {
  const run = (rate: number, images: number) => ({
    key: 'sgd-adam',
    method: 'SGD-UAP (Adam)',
    run: 'linf-10-sgd-adam',
    heldOutImages: images,
    heldOutFoolingRate: rate,
    interval: wilsonInterval(rate, images),
    cleanAccuracy: 0.9,
    perturbedAccuracy: 0.5,
    dominantLabels: [],
    noiseFoolingRate: 0.1,
    craftSeconds: 3,
    passes: 2,
    stopReason: 'x',
  });
  const audit = (rate: number, images = 1000, failAbove: number | null = 0.5): AuditResult => ({
    schema: AUDIT_SCHEMA,
    uapVersion: '0',
    date: '2026-12-06T00:00:00Z',
    command: 'uap audit',
    model: { spec: 'm', name: 'm', sha256: null, fingerprint: 'f', inputShape: [28, 28, 1], numClasses: 10 },
    maxPasses: 2,
    data: { crafting: { images: 100, listSha256: null }, heldOut: { images, listSha256: null } },
    seed: 0,
    budgetSeconds: 60,
    failAbove,
    methods: ['sgd-adam'],
    budgets: [{ norm: 'inf', xi: 10, verdict: 'pass', noiseFoolingRate: 0.1, worst: run(rate, images), runs: [run(rate, images)] }],
    verdict: 'pass',
    seconds: 5,
  });

  it('a change is worse or better only when the 95% intervals are apart; otherwise within the noise', () => {
    expect(compareAudits(audit(0.3), audit(0.4), 'old.json').budgets[0].change).toBe('worse'); // 27-33% vs 37-43%
    expect(compareAudits(audit(0.4), audit(0.3), 'old.json').budgets[0].change).toBe('better');
    expect(compareAudits(audit(0.3), audit(0.32), 'old.json')).toMatchObject({
      regression: false,
      budgets: [{ change: 'within the noise' }],
    });
    // The same 10-point gap on 50 images is inside the noise.
    expect(compareAudits(audit(0.3, 50), audit(0.4, 50), 'old.json').regression).toBe(false);
    // Budgets of another norm or radius are not compared.
    const other = { ...audit(0.1), budgets: [{ ...audit(0.1).budgets[0], xi: 12 }] };
    expect(compareAudits(other, audit(0.9), 'old.json').budgets).toEqual([]);
  });

  it('JUnit: a test case per method, failed above the threshold, and one for the regression', () => {
    const a = { ...audit(0.6), compare: compareAudits(audit(0.3), audit(0.6), 'old.json') };
    const xml = auditJunit(a);
    expect(junitCounts(xml)).toEqual({ tests: 2, failures: 2, suites: 1 });
    expect(xml).toMatch(
      /<failure message="held-out fooling rate 60.0% \(95% CI 56.9%-63.0%, 1000 images\) vs threshold 50.0%" type="vulnerable"\/>/,
    );
    expect(xml).toMatch(/name="no regression"[^]*type="regression"/);
    expect(junitCounts(auditJunit(audit(0.4)))).toEqual({ tests: 1, failures: 0, suites: 1 });
  });

  it('the labels the fooled images receive, by share', () => {
    expect(receivedLabels(Int32Array.from([0, 1, 2, 3, 4]), Int32Array.from([5, 5, 2, 6, 5]))).toEqual([
      { label: 5, share: 0.75 },
      { label: 6, share: 0.25 },
    ]);
  });

  it('an earlier audit.json is read checked: another schema or a damaged budget is refused by file', () => {
    const dir = tmp('uap-audit-read-');
    const good = join(dir, 'good.json');
    writeFileSync(good, JSON.stringify(audit(0.3)));
    expect(readAudit(good).audit.budgets[0].worst.heldOutFoolingRate).toBe(0.3);
    const other = join(dir, 'other.json');
    writeFileSync(other, JSON.stringify({ ...audit(0.3), schema: 'something/2' }));
    expect(() => readAudit(other)).toThrow(/other\.json: not an audit\.json of schema uap-audit\/1 \(its "schema" is "something\/2"\)/);
    const damaged = join(dir, 'damaged.json');
    const d = audit(0.3);
    (d.budgets[0].worst as { heldOutFoolingRate: unknown }).heldOutFoolingRate = 'high';
    writeFileSync(damaged, JSON.stringify(d));
    expect(() => readAudit(damaged)).toThrow(/damaged\.json: a budget without its norm, radius, worst-case rate and image count/);
    expect(() => readAudit(join(dir, 'none.json'))).toThrow(/none\.json: not found/);
  });
});

describe('uap audit end to end (embedded model)', () => {
  const args = ['--norms', 'inf:40', '--max-passes', '3', '--methods', 'sgd-adam,sgd-targeted', '--limit', '100', '--val-limit', '200'];
  let first: string;
  let audit: AuditResult;
  let status: number | null;
  beforeAll(async () => {
    first = tmp('uap-audit-');
    const r = await uapCli(['audit', ...args, '--fail-above', '30%', '-o', first]);
    status = r.status;
    expect(r.stderr).not.toMatch(/\n\s+at /);
    audit = JSON.parse(readFileSync(join(first, 'audit.json'), 'utf8')) as AuditResult;
  }, 300_000);

  it('fails (exit 1) above the threshold, with the worst case, its interval, noise and the labels it sends images to', () => {
    expect(status).toBe(1);
    expect(audit.schema).toBe(AUDIT_SCHEMA);
    expect(audit.verdict).toBe('fail');
    const [b] = audit.budgets;
    expect(b).toMatchObject({ norm: 'inf', xi: 40, verdict: 'fail' });
    expect(b.runs.map((r) => r.key)).toEqual(['sgd-adam', 'sgd-targeted']);
    expect(b.worst.heldOutFoolingRate).toBe(Math.max(...b.runs.map((r) => r.heldOutFoolingRate)));
    expect(b.worst.heldOutFoolingRate).toBeGreaterThan(0.3);
    expect(b.worst.interval).toEqual(wilsonInterval(b.worst.heldOutFoolingRate, 200));
    expect(b.noiseFoolingRate).toBeLessThan(b.worst.heldOutFoolingRate);
    expect(b.runs[1].target!.label).toBeGreaterThanOrEqual(0);
    expect(b.runs[1].method).toBe(`SGD-UAP towards the most absorbing label (${b.runs[1].target!.name})`);
    for (const r of b.runs) {
      expect(r.passes).toBe(3);
      expect(existsSync(join(first, r.run, 'perturbation.npy'))).toBe(true);
    }
    // The image lists' hashes are those the crafting runs recorded (they were null: the job's config lacked provenance).
    const prov = (JSON.parse(readFileSync(join(first, b.runs[0].run, 'config.json'), 'utf8')) as { provenance: Record<string, string> })
      .provenance;
    expect(audit.data.crafting.listSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(audit.data).toMatchObject({ crafting: { listSha256: prov.dataListSha256 }, heldOut: { listSha256: prov.valListSha256 } });
    expect(audit.data).toMatchObject({ crafting: { images: 100 }, heldOut: { images: 200 } });
    expect(audit.model.fingerprint).toMatch(/^[0-9a-f]{64}$/);
  });

  it('writes JUnit XML, a model-card section and the report', () => {
    expect(junitCounts(readFileSync(join(first, 'audit.xml'), 'utf8'))).toMatchObject({ tests: 2, suites: 1 });
    const md = readFileSync(join(first, 'audit.md'), 'utf8');
    expect(md).toContain('## Robustness to universal adversarial perturbations');
    expect(md).toMatch(/\| Linf 40 \| \*\*\d+\.\d%\*\* \(\d+\.\d%-\d+\.\d%\) \|/);
    expect(readFileSync(join(first, 'report.html'), 'utf8')).toContain('uap audit: fashion-mnist-cnn');
  });

  it('the same command gives the same audit; --compare with it is within the noise (exit 0 under the threshold)', async () => {
    const again = tmp('uap-audit-again-');
    const r = await uapCli(['audit', ...args, '--fail-above', '99%', '--compare', join(first, 'audit.json'), '--json', '-o', again]);
    expect(r.status, r.stderr).toBe(0);
    const a = JSON.parse(r.stdout) as AuditResult;
    expect(a.budgets[0].runs.map((x) => x.heldOutFoolingRate)).toEqual(audit.budgets[0].runs.map((x) => x.heldOutFoolingRate));
    expect(a.verdict).toBe('pass');
    expect(a.compare).toMatchObject({ regression: false, budgets: [{ change: 'within the noise' }] });
  }, 300_000);

  it('--compare flags a regression against a less vulnerable release (exit 1), in the JUnit file too', async () => {
    const dir = tmp('uap-audit-reg-');
    const old = JSON.parse(readFileSync(join(first, 'audit.json'), 'utf8')) as AuditResult;
    old.budgets[0].worst = { ...old.budgets[0].worst, heldOutFoolingRate: 0.05 };
    writeFileSync(join(dir, 'old.json'), JSON.stringify(old));
    const r = await uapCli(['audit', ...args, '--compare', join(dir, 'old.json'), '-o', join(dir, 'new')]);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stdout).toMatch(/Linf 40: 5\.0% -> \d+\.\d% \(worse\)/);
    expect(r.stdout).toContain('verdict: reported, and a regression');
    expect(readFileSync(join(dir, 'new', 'audit.xml'), 'utf8')).toContain('type="regression"');
  }, 300_000);

  it('one folder alone is split (seeded) into crafting and held-out images, never the same image in both', async () => {
    const out = tmp('uap-audit-split-');
    const r = await uapCli([
      'audit',
      '--data',
      join(EMBEDDED_DIR, 'images', 'craft'),
      '--norms',
      'inf:40',
      '--max-passes',
      '1',
      '--methods',
      'sgd-adam',
      '--json',
      '-o',
      out,
    ]);
    expect(r.status, r.stderr).toBe(0);
    const a = JSON.parse(r.stdout) as AuditResult;
    const paths = (f: string) =>
      readFileSync(join(out, f), 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.split(',')[0]);
    const [crafting, heldOut] = [paths('crafting-split.txt'), paths('held-out-split.txt')];
    expect([crafting.length, heldOut.length]).toEqual([100, 100]);
    expect(crafting.filter((p) => heldOut.includes(p))).toEqual([]);
    expect(a.data).toMatchObject({ crafting: { images: 100 }, heldOut: { images: 100 } });
  }, 300_000);

  it('refuses bad input in one line (exit 2): a folder too small to split, an unknown method, a missing audit to compare', async () => {
    for (const [extra, pattern] of [
      [['--data', twoImages()], /--data .*: 2 images; an audit splits them in two and needs at least 4/],
      [['--methods', 'fgsm'], /--methods fgsm: expected some of sgd-adam, algorithm1, gduap, sgd-targeted, authors/],
      [['--compare', '/no/such/audit.json'], /--compare \/no\/such\/audit\.json: not found/],
    ] as const) {
      const r = await uapCli(['audit', ...extra, '-o', tmp('uap-audit-bad-')]);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr.trim().split('\n').pop()).toMatch(pattern);
    }
  }, 120_000);
});

describe('uap audit judges a hardened model less vulnerable', () => {
  it('the embedded model fine-tuned on a pool of UAPs: a lower worst case with the 95% intervals apart, and the original flagged as a regression against it', async () => {
    const dir = tmp('uap-audit-hard-');
    const ft = await uapCli([
      'finetune',
      '--defence',
      'pool',
      '--limit',
      '200',
      '--val-limit',
      '200',
      '--pool-size',
      '8',
      '--epochs',
      '6',
      '-o',
      join(dir, 'ft'),
    ]);
    expect(ft.status, ft.stderr).toBe(0);
    const hardened = join(dir, 'ft', 'round-1', 'model', 'card.json');
    // 1000 held-out test images: intervals of about +-3 points.
    const args = [
      '--norms',
      'inf:40',
      '--max-passes',
      '3',
      '--methods',
      'sgd-adam,sgd-targeted',
      '--limit',
      '100',
      '--val',
      'fashion:test',
      '--val-sample',
      '1000',
    ];
    const base = await uapCli(['audit', ...args, '-o', join(dir, 'base')]);
    expect(base.status, base.stderr).toBe(0);
    const hard = await uapCli([
      'audit',
      ...args,
      '-m',
      hardened,
      '--compare',
      join(dir, 'base', 'audit.json'),
      '--json',
      '-o',
      join(dir, 'hard'),
    ]);
    expect(hard.status, hard.stderr).toBe(0);
    const a = JSON.parse(hard.stdout) as AuditResult;
    const [c] = a.compare!.budgets;
    expect(c.change).toBe('better');
    expect(c.after.interval[1]).toBeLessThan(c.before.interval[0]);
    // The other way round (the original released after the hardened one) is a regression: exit 1.
    const back = await uapCli(['audit', ...args, '--compare', join(dir, 'hard', 'audit.json'), '-o', join(dir, 'back')]);
    expect(back.status, back.stderr).toBe(1);
    expect(back.stdout).toContain('(worse)');
  }, 600_000);
});
