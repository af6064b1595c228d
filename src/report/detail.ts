import sharp from 'sharp';
import type { ClassRate, ValidationDetail } from '../evaluation/perImage.js';
import { readNpy } from '../io/npy.js';
import { vegaLiteToSvg, type TopLevelSpec } from './plots.js';
import { pct } from './format.js';
import type { ImageShape } from '../math/imageShape.js';

/** The report's sections on what a reviewer asks beyond one rate: classes, confusions, confidence, spectrum, provenance. */

export const esc = (s: unknown) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

export type { ValidationDetail };

/** Classes with fewer images than this are left out of the plot when there are many classes: one or two images say nothing. */
export const PLOT_MIN_IMAGES = 5;
/** Most bars the per-class plot draws. */
const PLOT_MAX_CLASSES = 40;

/** Most fooled first by the interval's lower end (a class at 100% of one image sinks below 90% of fifty), then by count. */
const byEvidence = (a: ClassRate, b: ClassRate) => b.lo - a.lo || b.rate - a.rate || b.images - a.images;

/**
 * The classes the plot shows: all of them (in index order) when they fit, else the most fooled by the
 * lower end of their interval among those with at least PLOT_MIN_IMAGES images.
 */
export function plottedClasses(rows: ClassRate[]): { shown: ClassRate[]; sorted: boolean; fewImages: number } {
  if (rows.length <= PLOT_MAX_CLASSES) return { shown: rows, sorted: false, fewImages: 0 };
  const enough = rows.filter((r) => r.images >= PLOT_MIN_IMAGES);
  const pool = enough.length ? enough : rows;
  return { shown: [...pool].sort(byEvidence).slice(0, PLOT_MAX_CLASSES), sorted: true, fewImages: rows.length - pool.length };
}

/** Fooling rate per class with its 95% interval; each label carries its image count. */
function perClassSpec(rows: ClassRate[]): TopLevelSpec {
  const { shown, sorted } = plottedClasses(rows);
  const values = shown.map((r, i) => ({ name: `${r.name.split(',')[0]} (${r.images})`, order: i, rate: r.rate, lo: r.lo, hi: r.hi }));
  const y = {
    field: 'name',
    type: 'nominal',
    sort: sorted ? { field: 'order' } : null,
    title: `${rows[0]?.by === 'true label' ? 'true class' : 'predicted class (clean)'} (images)`,
    axis: { labelLimit: 220 },
  };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    data: { values },
    width: 360,
    height: { step: 14 },
    layer: [
      {
        mark: { type: 'bar', color: '#d62728' },
        encoding: {
          y,
          x: { field: 'rate', type: 'quantitative', title: 'fooling rate (95% CI)', scale: { domain: [0, 1] }, axis: { format: '%' } },
        },
      },
      { mark: { type: 'rule', color: '#333' }, encoding: { y, x: { field: 'lo', type: 'quantitative' }, x2: { field: 'hi' } } },
    ],
  } as TopLevelSpec;
}

export async function detailSection(d: ValidationDetail, draw: (spec: TopLevelSpec) => Promise<string> = vegaLiteToSvg): Promise<string> {
  const c = d.confidence;
  const many = d.perClass.length > PLOT_MAX_CLASSES;
  const plotted = plottedClasses(d.perClass);
  const table = (rows: ClassRate[]) =>
    `<table><tr><th>class</th><th>images</th><th>fooled</th><th>fooling rate (95% CI)</th></tr>${rows
      .map(
        (r) =>
          `<tr><td>${esc(r.name.split(',')[0])}</td><td>${r.images}</td><td>${r.fooled}</td><td>${pct(r.rate)} (${pct(r.lo)}-${pct(r.hi)})</td></tr>`,
      )
      .join('')}</table>`;
  const most = [...d.perClass].sort(byEvidence).slice(0, 10);
  // Least fooled by the interval's upper end: a class at 0% of one image is not known to resist.
  const least = [...d.perClass].sort((a, b) => a.hi - b.hi || a.rate - b.rate || b.images - a.images).slice(0, 10);
  const tables = many
    ? `<div class="row"><div><p>10 most fooled classes (by the lower end of the interval)</p>${table(most)}</div><div><p>10 least fooled classes (by the upper end of the interval)</p>${table(least)}</div></div>`
    : table(d.perClass);
  const conf = d.confusions.length
    ? `<table><tr><th>clean label</th><th>becomes</th><th>images</th></tr>${d.confusions.map((x) => `<tr><td>${esc(x.fromName.split(',')[0])}</td><td>${esc(x.toName.split(',')[0])}</td><td>${x.images}</td></tr>`).join('')}</table>`
    : '<p>no image changed label</p>';
  return `<h3>Per class, confusions and confidence (validation set)</h3>
<p>Mean confidence (softmax) in the clean label: ${pct(c.cleanConfidence)} on clean images, ${pct(c.cleanLabelConfidenceAfter)} with v added; mean confidence in the label given with v: ${pct(c.perturbedConfidence)}. Mean logit margin of the clean label over the best other class: ${c.marginBefore.toFixed(2)} before, ${c.marginAfter.toFixed(2)} after (negative: the label changed).</p>
<p>Fooling rate by ${esc(d.perClass[0]?.by ?? 'class')}${
    many
      ? ` (${d.perClass.length} classes; the plot shows the ${plotted.shown.length} most fooled by the lower end of their interval${plotted.fewImages ? `, leaving out ${plotted.fewImages} classes with fewer than ${PLOT_MIN_IMAGES} images` : ''})`
      : ''
  }; with few images per class the intervals are wide.</p>
<div class="row"><figure>${await draw(perClassSpec(d.perClass))}<figcaption>fooling rate per class (images in brackets), 95% Wilson intervals</figcaption></figure><div>${tables}</div></div>
<p>Most frequent label changes (clean -> with v):</p>${conf}`;
}

/** Magnitudes of the 2-D DFT of each channel of an [h, w, c] array, summed over channels, centred (zero frequency in the middle). */
export function amplitudeSpectrum(data: Float32Array, h: number, w: number, c: number): Float64Array {
  // Separable DFT (rows, then columns): O(hw(h + w)), a fraction of a second at 224 x 224 and no dependency.
  const out = new Float64Array(h * w);
  const re = new Float64Array(h * w);
  const im = new Float64Array(h * w);
  const cosW = Float64Array.from({ length: w }, (_, k) => Math.cos((2 * Math.PI * k) / w));
  const sinW = Float64Array.from({ length: w }, (_, k) => Math.sin((2 * Math.PI * k) / w));
  const cosH = Float64Array.from({ length: h }, (_, k) => Math.cos((2 * Math.PI * k) / h));
  const sinH = Float64Array.from({ length: h }, (_, k) => Math.sin((2 * Math.PI * k) / h));
  for (let ch = 0; ch < c; ch++) {
    for (let y = 0; y < h; y++)
      for (let u = 0; u < w; u++) {
        let sr = 0;
        let si = 0;
        for (let x = 0; x < w; x++) {
          const p = data[(y * w + x) * c + ch];
          const k = (u * x) % w;
          sr += p * cosW[k];
          si -= p * sinW[k];
        }
        re[y * w + u] = sr;
        im[y * w + u] = si;
      }
    for (let u = 0; u < w; u++)
      for (let v = 0; v < h; v++) {
        let sr = 0;
        let si = 0;
        for (let y = 0; y < h; y++) {
          const k = (v * y) % h;
          const a = re[y * w + u];
          const b = im[y * w + u];
          sr += a * cosH[k] + b * sinH[k];
          si += b * cosH[k] - a * sinH[k];
        }
        const cy = (v + Math.floor(h / 2)) % h;
        const cx = (u + Math.floor(w / 2)) % w;
        out[cy * w + cx] += Math.hypot(sr, si);
      }
  }
  return out;
}

/** Mean, standard deviation, min, max and L2 norm of each channel of an [h, w, c] array. */
export function channelStats(
  data: Float32Array,
  c: number,
): { channel: number; mean: number; std: number; min: number; max: number; l2: number }[] {
  return Array.from({ length: c }, (_, ch) => {
    let sum = 0;
    let sq = 0;
    let min = Infinity;
    let max = -Infinity;
    let n = 0;
    for (let i = ch; i < data.length; i += c) {
      sum += data[i];
      sq += data[i] * data[i];
      min = Math.min(min, data[i]);
      max = Math.max(max, data[i]);
      n++;
    }
    const mean = sum / n;
    return { channel: ch, mean, std: Math.sqrt(Math.max(0, sq / n - mean * mean)), min, max, l2: Math.sqrt(sq) };
  });
}

/** The perturbation's log-amplitude spectrum as a PNG data URI, and its per-channel statistics. */
export async function spectrumSection(file: string): Promise<string> {
  const arr = readNpy(file);
  if (arr.shape.length !== 3) return '';
  const [h, w, c] = arr.shape as ImageShape;
  const data = Float32Array.from(arr.data as ArrayLike<number>);
  const amp = amplitudeSpectrum(data, h, w, c);
  const logs = Array.from(amp, (a) => Math.log1p(a));
  const hi = Math.max(...logs);
  const lo = Math.min(...logs);
  const px = Buffer.from(logs.map((l) => Math.round((255 * (l - lo)) / Math.max(1e-12, hi - lo))));
  const scale = Math.max(1, Math.round(224 / w));
  const png = await sharp(px, { raw: { width: w, height: h, channels: 1 } })
    .resize(w * scale, h * scale, { kernel: 'nearest' })
    .png()
    .toBuffer();
  const names = c === 3 ? ['R', 'G', 'B'] : c === 1 ? ['gray'] : Array.from({ length: c }, (_, i) => `channel ${i}`);
  const stats = channelStats(data, c);
  return `<h3>The perturbation in frequency and per channel</h3>
<div class="row"><figure><img src="data:image/png;base64,${png.toString('base64')}" alt="amplitude spectrum of the perturbation" width="${w * scale}"><figcaption>2-D Fourier amplitude of v (log scale, channels summed, zero frequency at the centre): energy away from the centre is fine, high-frequency structure</figcaption></figure>
<table><tr><th>channel</th><th>mean</th><th>std</th><th>min</th><th>max</th><th>L2</th></tr>${stats
    .map(
      (s) =>
        `<tr><td>${names[s.channel]}</td><td>${s.mean.toFixed(2)}</td><td>${s.std.toFixed(2)}</td><td>${s.min.toFixed(2)}</td><td>${s.max.toFixed(2)}</td><td>${s.l2.toFixed(1)}</td></tr>`,
    )
    .join('')}</table></div>`;
}

/** Where the run came from: version, command, hashes of model and image lists, runtime, seed. */
export function provenanceTable(p: Record<string, unknown> | undefined): string {
  if (!p) return '';
  const short = (h: unknown) => (typeof h === 'string' ? `<code title="${esc(h)}">${esc(h.slice(0, 16))}</code>` : '-');
  const rows: [string, string][] = [
    ['uap', esc(p.uapVersion)],
    ['command', `<code>${esc(p.command)}</code>`],
    ['model file, SHA-256', `${esc(p.modelFile ?? '-')} ${short(p.modelSha256)}`],
    ['image lists, SHA-256 (X / validation)', `${short(p.dataListSha256)} / ${short(p.valListSha256)}`],
    ['runtime, Node', `${esc(p.runtime)}, ${esc(p.node)}`],
    ['seed, date', `${esc(p.seed)}, ${esc(p.date)}`],
  ];
  return `<details><summary>Provenance</summary><table>${rows.map(([k, v]) => `<tr><th>${k}</th><td>${v}</td></tr>`).join('')}</table></details>`;
}
