import type { AuditBudget, AuditResult } from './auditResult.js';
import { pct } from '../report/format.js';

/** An audit as a CI system and a model card read it: JUnit XML and a Markdown section. */

const xml = (s: unknown) =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);

/** A budget in words: "Linf 10". */
export const budgetName = (b: AuditBudget) => `${b.norm === 'inf' ? 'Linf' : 'L2'} ${b.xi}`;

const ci = (i: [number, number]) => `95% CI ${pct(i[0])}-${pct(i[1])}`;

/**
 * JUnit XML: one test suite per norm budget, one test case per method (failed when its held-out
 * fooling rate is above the threshold), and with --compare one test case per budget for the regression.
 */
export function auditJunit(a: AuditResult): string {
  const suites = a.budgets.map((b) => {
    const cases = b.runs.map((r) => {
      const over = a.failAbove !== null && r.heldOutFoolingRate > a.failAbove;
      const text = `held-out fooling rate ${pct(r.heldOutFoolingRate)} (${ci(r.interval)}, ${r.heldOutImages} images)${a.failAbove !== null ? ` vs threshold ${pct(a.failAbove)}` : ''}`;
      return `    <testcase classname="uap.audit.${xml(budgetName(b).replace(' ', '-').toLowerCase())}" name="${xml(r.method)}" time="${r.craftSeconds.toFixed(1)}">${
        over ? `\n      <failure message="${xml(text)}" type="vulnerable"/>\n    ` : `<system-out>${xml(text)}</system-out>`
      }</testcase>`;
    });
    const cmp = a.compare?.budgets.find((c) => c.norm === b.norm && c.xi === b.xi);
    if (cmp) {
      const text = `worst case ${pct(cmp.after.rate)} (${ci(cmp.after.interval)}) vs ${pct(cmp.before.rate)} (${ci(cmp.before.interval)}) in ${a.compare!.against}: ${cmp.change}`;
      cases.push(
        `    <testcase classname="uap.audit.${xml(budgetName(b).replace(' ', '-').toLowerCase())}" name="no regression" time="0">${
          cmp.change === 'worse'
            ? `\n      <failure message="${xml(text)}" type="regression"/>\n    `
            : `<system-out>${xml(text)}</system-out>`
        }</testcase>`,
      );
    }
    const failures = cases.filter((c) => c.includes('<failure')).length;
    const time = b.runs.reduce((s, r) => s + r.craftSeconds, 0);
    return `  <testsuite name="${xml(`uap audit: ${a.model.name}, ${budgetName(b)}`)}" tests="${cases.length}" failures="${failures}" errors="0" time="${time.toFixed(1)}">\n${cases.join('\n')}\n  </testsuite>`;
  });
  const tests = suites.reduce((s, x) => s + Number(/tests="(\d+)"/.exec(x)![1]), 0);
  const failures = suites.reduce((s, x) => s + Number(/failures="(\d+)"/.exec(x)![1]), 0);
  return `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="uap audit" tests="${tests}" failures="${failures}" errors="0" time="${a.seconds.toFixed(1)}">\n${suites.join('\n')}\n</testsuites>\n`;
}

/** A Markdown section for a model card: the worst case per budget with its interval, accuracy, noise and dominant labels. */
export function auditMarkdown(a: AuditResult): string {
  const rows = a.budgets.map((b) => {
    const w = b.worst;
    const acc =
      w.cleanAccuracy !== null && w.perturbedAccuracy !== null ? `${pct(w.cleanAccuracy)} -> ${pct(w.perturbedAccuracy)}` : 'no labels';
    const labels = w.dominantLabels.map((d) => `${d.name.split(',')[0]} (${pct(d.share)})`).join(', ') || '-';
    return `| ${budgetName(b)} | **${pct(w.heldOutFoolingRate)}** (${pct(w.interval[0])}-${pct(w.interval[1])}) | ${w.method} | ${acc} | ${pct(b.noiseFoolingRate)} | ${labels} | ${w.craftSeconds.toFixed(0)} s | ${b.verdict} |`;
  });
  const compare = a.compare
    ? [
        '',
        `Against ${a.compare.against}: ${a.compare.budgets.map((c) => `${budgetName(c)} ${pct(c.before.rate)} -> ${pct(c.after.rate)} (${c.change})`).join('; ')}${a.compare.regression ? ' — **a regression**' : ''}.`,
      ]
    : [];
  return [
    `## Robustness to universal adversarial perturbations`,
    '',
    `One perturbation, the same for every image, within each norm budget (pixels, [0, 255] images): the worst case over ${a.methods.length} methods (${a.methods.join(', ')}), crafted on ${a.data.crafting.images} images and measured on ${a.data.heldOut.images} held-out images it never saw. Fooling rate: share of held-out images whose top-1 label changes.${a.failAbove !== null ? ` Threshold: ${pct(a.failAbove)}.` : ''}`,
    '',
    '| budget | held-out fooling rate (95% CI) | strongest method | accuracy clean -> perturbed | random noise of the budget | labels the fooled images receive | crafting time | verdict |',
    '|---|---|---|---|---|---|---|---|',
    ...rows,
    ...compare,
    '',
    `uap ${a.uapVersion}, ${a.date.slice(0, 10)}, seed ${a.seed}, model sha256 ${a.model.sha256 ?? 'n/a'}; \`${a.command}\``,
    '',
  ].join('\n');
}
