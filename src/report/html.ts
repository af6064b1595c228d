import { existsSync } from 'node:fs';
import { readBounded, readBoundedJson, readBoundedText } from '../io/bounded.js';
import { basename, join } from 'node:path';
import { UsageError, withOptionNames } from '../errors.js';
import { rateLines, ReportFigures, type TopLevelSpec } from './plots.js';
import { methodName, pct, pctCI } from './format.js';
import { runWarnings } from './warnings.js';
import { detailSection, esc, provenanceTable, spectrumSection } from './detail.js';
import { readRunFiles } from '../run/files.js';

/**
 * One self-contained HTML page (opens offline: images as data URIs, plots as inline SVG) for one or
 * more run directories of `uap compute` and of the analysis commands.
 */

interface PassRow {
  pass: number;
  foolingRate: number;
  targetSuccess?: number;
  valFoolingRate?: number;
  seconds: number;
}

function readJson<T>(file: string): T | undefined {
  return existsSync(file) ? (readBoundedJson(file, { what: 'run file' }) as T) : undefined;
}

function dataUri(file: string): string | undefined {
  return existsSync(file) ? `data:image/png;base64,${readBounded(file, { what: 'picture', kind: 'image' }).toString('base64')}` : undefined;
}

/** An SVG file's <svg> element, for inlining (XML prolog and DOCTYPE dropped). */
function inlineSvg(file: string): string | undefined {
  if (!existsSync(file)) return undefined;
  const s = readBoundedText(file, { what: 'figure' });
  const at = s.indexOf('<svg');
  return at >= 0 ? s.slice(at) : undefined;
}

function passCurve(history: PassRow[]): TopLevelSpec {
  return rateLines(
    history.flatMap((h) => [
      { x: h.pass, rate: h.foolingRate, what: 'fooling rate on X' },
      ...(h.valFoolingRate !== undefined ? [{ x: h.pass, rate: h.valFoolingRate, what: 'fooling rate on validation' }] : []),
      ...(h.targetSuccess !== undefined ? [{ x: h.pass, rate: h.targetSuccess, what: 'targeted success on X' }] : []),
    ]),
    'pass',
    undefined,
    'fooling rate',
    true,
  );
}

const ANALYSES: [file: string, title: string, summary: (j: Record<string, unknown>) => string][] = [
  [
    'baseline',
    'Fooling rate against norm (vs random noise)',
    (j) => `||v|| = ${Number(j.vNorm).toFixed(1)} (${j.norm === 2 ? 'L2' : 'Linf'}), ${j.images} images`,
  ],
  ['sweep-size', 'Fooling rate against the size of X', (j) => `${j.method}, validation on ${j.validationImages} images`],
  [
    'graph',
    'Fooling graph',
    (j) => {
      const dom = (j.dominant as { name: string; share: number }[])
        .slice(0, 3)
        .map((d) => `${d.name.split(',')[0]} ${pct(d.share)}`)
        .join(', ');
      return `${j.fooled} of ${j.images} images fooled; dominant labels: ${dom}`;
    },
  ],
  [
    'normals',
    'DeepFool normals: singular values',
    (j) => {
      const sub = (j.subspace as { d: number; mean: number }[]).map((p) => `top-${p.d}: ${pct(p.mean)}`).join(', ');
      return `${j.normals} normals; random vectors from the subspace: ${sub}; unconstrained: ${pct((j.unconstrained as { mean: number }).mean)}`;
    },
  ],
  [
    'transfer',
    'Transfer across models',
    (j) => `${(j.sources as unknown[]).length} perturbations x ${(j.models as unknown[]).length} models`,
  ],
];

interface DefenceRound {
  round: number;
  cleanAccuracy: number;
  foolingRate: number;
  previousFoolingRate: number | null;
  epochs: { epoch: number; learningRate?: number; cleanAccuracy: number; poolFoolingRate: number; kept: boolean }[];
}

/** Per round: clean accuracy and the fresh UAP's fooling rate (the paper's defence table, as a plot). */
function defenceCurve(rounds: DefenceRound[]): TopLevelSpec {
  return rateLines(
    rounds.flatMap((r) => [
      { x: r.round, rate: r.foolingRate, what: 'fresh UAP: fooling rate' },
      { x: r.round, rate: r.cleanAccuracy, what: 'clean accuracy' },
      ...(r.previousFoolingRate !== null ? [{ x: r.round, rate: r.previousFoolingRate, what: "previous round's UAP: fooling rate" }] : []),
    ]),
    'fine-tuning round (0 = original)',
    undefined,
    null,
    true,
  );
}

/** The defence run of `uap finetune`: rounds table, curve, and the perturbations before and after. */
async function defenceSection(
  dir: string,
  d: { config: Record<string, unknown>; rounds: DefenceRound[] },
  figures: ReportFigures,
): Promise<string> {
  const a = d.config.attack as { norm: number | string; xi: number };
  const f = d.config.finetune as {
    poolSize: number;
    epochs: number;
    learningRate: number;
    sampling: { probability: number; scale: [number, number] };
  };
  const rows = d.rounds.map((r) => {
    const epochs = r.epochs
      .map(
        (e) =>
          `${e.epoch}${e.learningRate ? ` (lr ${e.learningRate.toExponential(0)})` : ''}: ${pct(e.cleanAccuracy)} / ${pct(e.poolFoolingRate)}${e.kept ? '' : ' (undone)'}`,
      )
      .join('; ');
    return `<tr><td>${r.round === 0 ? '0 (original)' : r.round}</td><td>${pct(r.cleanAccuracy)}</td><td><b>${pct(r.foolingRate)}</b></td><td>${pct(r.previousFoolingRate)}</td><td>${esc(epochs || '-')}</td></tr>`;
  });
  const figs = [
    `<figure>${await figures.draw(`${basename(dir)}-defence-rounds`, defenceCurve(d.rounds))}<figcaption>on the validation images</figcaption></figure>`,
  ];
  for (const r of [d.rounds[0], d.rounds[d.rounds.length - 1]]) {
    const img = r && dataUri(join(dir, `round-${r.round}`, 'attack', 'perturbation.png'));
    if (img && (r.round === 0 || d.rounds.length > 1))
      figs.push(
        `<figure><img src="${img}" alt="UAP round ${r.round}" width="160"><figcaption>fresh UAP, round ${r.round}</figcaption></figure>`,
      );
  }
  return `<h3>Defence: fine-tuning on universal perturbations</h3>
<p>${methodName(d.config)}, ${a.norm === 2 ? 'L2' : 'Linf'} xi = ${esc(a.xi)}; pool of ${f.poolSize} perturbations per round, each training image perturbed with probability ${f.sampling.probability} by a member times U(${f.sampling.scale.join(', ')}); ${f.epochs} epoch(s) per round, Adam ${f.learningRate}; ${esc(d.config.images)} training images, ${esc(d.config.valImages)} validation images.</p>
<table><tr><th>round</th><th>clean accuracy</th><th>fresh UAP fooling rate</th><th>previous round's UAP</th><th>epochs: clean accuracy / fooling rate of the pool</th></tr>${rows.join('')}</table>
<div class="row">${figs.join('')}</div>`;
}

async function runSection(dir: string, figures: ReportFigures): Promise<string> {
  const files = readRunFiles(dir);
  const config = files?.config;
  const parts: string[] = [];
  if (files) {
    const { metrics } = files;
    const { run, onVal, onX, randomNoiseOnVal: random, target, classDiscriminative: cd } = metrics;
    const rows: [string, string][] = [
      ['model', esc(files.config.model)],
      ['method', methodName(files.config)],
      [
        'norm, radius',
        `${files.config.norm === 2 ? 'L2' : 'Linf'} ${esc(files.config.xi)} (||v||<sub>2</sub> ${metrics.normL2.toFixed(0)}, ||v||<sub>inf</sub> ${metrics.normInf.toFixed(1)})`,
      ],
      ['passes, time', `${run.passes}, ${run.seconds.toFixed(0)} s — ${esc(run.stopReason)}`],
      ['fooling rate on X', `${pctCI(onX.foolingRate, onX.images)}, ${onX.images} images`],
      ['fooling rate on validation', onVal ? `<b>${pctCI(onVal.foolingRate, onVal.images)}</b>, ${onVal.images} images` : '-'],
      ...(onVal?.cleanAccuracy !== undefined
        ? [
            ['accuracy on validation, clean -> perturbed', `${pct(onVal.cleanAccuracy)} -> ${pct(onVal.perturbedAccuracy)}`] as [
              string,
              string,
            ],
          ]
        : []),
      ['random noise, same Linf / same L2', random ? `${pct(random.sameLp.mean)} / ${pct(random.sameL2.mean)}` : '-'],
      ...(target
        ? [
            ['targeted at', `${esc(target.name)}: ${pct(target.successOnX)} on X, ${pct(target.successOnVal)} on validation`] as [
              string,
              string,
            ],
          ]
        : []),
      ...(cd
        ? [
            [
              'class-discriminative',
              `classes ${esc(cd.classes.join(', '))}: ${pct(cd.onVal.attacked)} of their validation images fooled; the other classes keep their label on ${pct(cd.onVal.kept)}`,
            ] as [string, string],
          ]
        : []),
    ];
    parts.push(`<table>${rows.map(([k, v]) => `<tr><th>${k}</th><td>${v}</td></tr>`).join('')}</table>`);
    // A class-discriminative v is meant to leave most images alone: beside noise, its overall rate says nothing.
    for (const w of runWarnings({ onX, onVal, randomOnVal: cd ? null : random }))
      parts.push(`<p class="warning">warning: ${esc(withOptionNames(w))}</p>`);
    const figs: string[] = [];
    const pert = dataUri(join(dir, 'perturbation.png'));
    if (pert)
      figs.push(
        `<figure><img src="${pert}" alt="the perturbation" width="224"><figcaption>the perturbation (scaled for visibility)</figcaption></figure>`,
      );
    if (run.history.length)
      figs.push(
        `<figure>${await figures.draw(`${basename(dir)}-passes`, passCurve(run.history))}<figcaption>after each pass</figcaption></figure>`,
      );
    parts.push(`<div class="row">${figs.join('')}</div>`);
    const ex = dataUri(join(dir, 'examples.png'));
    if (ex)
      parts.push(
        `<figure><img src="${ex}" alt="examples" class="wide"><figcaption>validation images drawn at random (seed 0, not chosen for being fooled): clean label (top), with the perturbation and the label it now gets (bottom)</figcaption></figure>`,
      );
    const detail = metrics.validationDetail;
    if (detail) parts.push(await detailSection(detail, (spec) => figures.draw(`${basename(dir)}-per-class`, spec)));
    if (existsSync(join(dir, 'perturbation.npy'))) parts.push(await spectrumSection(join(dir, 'perturbation.npy')));
    if (existsSync(join(dir, 'predictions.csv')))
      parts.push(
        `<p>Per image (file, true label, clean and perturbed labels with confidences): <code>${esc(join(dir, 'predictions.csv'))}</code></p>`,
      );
    parts.push(provenanceTable(files.config.provenance));
  }
  const defence = readJson<{ config: Record<string, unknown>; rounds: DefenceRound[] }>(join(dir, 'defence.json'));
  if (defence?.rounds.length) parts.push(await defenceSection(dir, defence, figures));
  for (const [name, title, summary] of ANALYSES) {
    const j = readJson<Record<string, unknown>>(join(dir, `${name}.json`));
    const svg = inlineSvg(join(dir, `${name}.svg`));
    if (!j || !svg) continue;
    parts.push(`<h3>${title}</h3><p>${esc(summary(j))}</p><figure class="plot">${figures.keep(`${basename(dir)}-${name}`, svg)}</figure>`);
  }
  if (!parts.length)
    throw new UsageError(
      `${dir}: no run or analysis results here (expected config.json + metrics.json, defence.json of uap finetune, or *.json + *.svg of uap baseline / graph / sweep-size / normals / transfer)`,
    );
  return `<section><h2>${esc(config?.model ? `${config.model} — ${basename(dir)}` : basename(dir))}</h2>${parts.join('\n')}</section>`;
}

/** Several runs side by side: one table of their figures and their per-pass curves on one plot. */
async function comparisonSection(dirs: string[], figures: ReportFigures): Promise<string> {
  const runs = dirs.flatMap((dir) => {
    const files = readRunFiles(dir);
    return files ? [{ dir, ...files }] : [];
  });
  if (runs.length < 2) return '';
  const names = runs.map((r) => basename(r.dir));
  const rows = runs.map((r, i) => {
    const c = r.config;
    const { run, onX, onVal, randomNoiseOnVal: random } = r.metrics;
    return `<tr><td>${esc(names[i])}</td><td>${esc(c.model)}</td><td>${methodName(c)}</td><td>${c.norm === 2 ? 'L2' : 'Linf'} ${esc(c.xi)}</td><td>${pctCI(onX.foolingRate, onX.images)}</td><td>${onVal ? `<b>${pctCI(onVal.foolingRate, onVal.images)}</b>, n = ${onVal.images}` : '-'}</td><td>${random ? pct(random.sameLp.mean) : '-'}</td><td>${run.passes}, ${run.seconds.toFixed(0)} s</td></tr>`;
  });
  const curves = runs.flatMap((r, i) => r.metrics.run.history.map((h) => ({ x: h.pass, rate: h.foolingRate, what: names[i] })));
  return `<section><h2>Runs compared</h2>
<table><tr><th>run</th><th>model</th><th>method</th><th>norm, radius</th><th>fooling rate on X</th><th>on validation (95% CI)</th><th>random noise, same norm</th><th>passes, time</th></tr>${rows.join('')}</table>
<figure>${await figures.draw('runs-compared-passes', rateLines(curves, 'pass', undefined, 'fooling rate on X', true))}<figcaption>fooling rate on X after each pass, one line per run</figcaption></figure></section>`;
}

/** The report's HTML; every plot it draws also lands in `figures` (for standalone SVG files). */
export async function buildReport(
  dirs: string[],
  title = 'Universal adversarial perturbations — report',
  figures = new ReportFigures(),
): Promise<string> {
  if (!dirs.length) throw new UsageError('report: give at least one run directory');
  for (const d of dirs) if (!existsSync(d)) throw new UsageError(`${d}: not found (expected a run directory)`);
  const sections = [await comparisonSection(dirs, figures)];
  for (const d of dirs) sections.push(await runSection(d, figures));
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; } th, td { text-align: left; padding: .25em .8em; border-bottom: 1px solid #eee; vertical-align: top; }
th { font-weight: 600; color: #555; } .row { display: flex; gap: 2em; align-items: flex-start; flex-wrap: wrap; }
.warning { background: #fff3cd; border-left: 4px solid #d39e00; padding: 0.4em 0.8em; }
figure { margin: 1em 0; } figcaption { color: #666; font-size: .9em; } img.wide, .plot svg { max-width: 100%; height: auto; }
</style></head>
<body><h1>${esc(title)}</h1>
<p>Generated by <code>uap report</code> on ${new Date().toISOString().slice(0, 10)}. Fooling rate: share of images whose top-1 label changes when the perturbation is added (Moosavi-Dezfooli et al., CVPR 2017).</p>
${sections.join('\n')}
</body></html>
`;
}
