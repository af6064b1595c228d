import type { ImageItem } from '../data/source.js';
import { itemName } from '../data/source.js';
import { wilsonInterval } from '../math/interval.js';

/**
 * What a robustness study reports beyond the fooling rate: per image (confidences, logit margins), per
 * class, and which labels turn into which.
 */

/** One row of logits: top-1 index, its softmax probability, and the softmax probability / logit margin of class `of`. */
export function rowFacts(
  logits: Float32Array,
  k: number,
  row: number,
  of?: number,
): { top: number; prob: number; probOf: number; marginOf: number } {
  const base = row * k;
  let top = 0;
  for (let j = 1; j < k; j++) if (logits[base + j] > logits[base + top]) top = j;
  const max = logits[base + top];
  let sum = 0;
  for (let j = 0; j < k; j++) sum += Math.exp(logits[base + j] - max);
  const c = of ?? top;
  let other = -Infinity;
  for (let j = 0; j < k; j++) if (j !== c && logits[base + j] > other) other = logits[base + j];
  return { top, prob: 1 / sum, probOf: Math.exp(logits[base + c] - max) / sum, marginOf: logits[base + c] - other };
}

/** One image's facts: clean and perturbed top-1 with their probabilities, the clean label's probability and logit margin before and after. */
export interface ImageFacts {
  clean: number;
  cleanProb: number;
  cleanMargin: number;
  adv: number;
  advProb: number;
  cleanProbAfter: number;
  cleanMarginAfter: number;
}

/** Per-image facts of v on a set, in the set's order. */
export class PerImage {
  readonly items: ImageItem[] = [];
  private readonly rows: ImageFacts[] = [];

  /** The facts, in order (plain data: a worker sends them to the coordinator). */
  facts(): readonly ImageFacts[] {
    return this.rows;
  }

  /** Appends facts computed elsewhere (a shard of the set), in order. */
  addFacts(items: ImageItem[], facts: readonly ImageFacts[]): void {
    if (items.length !== facts.length) throw new Error(`per-image facts: ${facts.length} rows for ${items.length} images`);
    this.items.push(...items);
    this.rows.push(...facts);
  }

  /** Adds a batch from its clean and perturbed logits [n * k]. */
  add(items: ImageItem[], clean: Float32Array, adv: Float32Array, k: number): void {
    items.forEach((item, r) => {
      const c = rowFacts(clean, k, r);
      const a = rowFacts(adv, k, r, c.top);
      this.items.push(item);
      this.rows.push({
        clean: c.top,
        cleanProb: c.prob,
        cleanMargin: c.marginOf,
        adv: a.top,
        advProb: a.prob,
        cleanProbAfter: a.probOf,
        cleanMarginAfter: a.marginOf,
      });
    });
  }

  get size(): number {
    return this.rows.length;
  }

  /** Means over the images: confidence in the clean label before and after, its logit margin before and after. */
  confidence(): {
    cleanConfidence: number;
    cleanLabelConfidenceAfter: number;
    perturbedConfidence: number;
    marginBefore: number;
    marginAfter: number;
  } {
    const mean = (f: (r: ImageFacts) => number) => this.rows.reduce((s, r) => s + f(r), 0) / Math.max(1, this.rows.length);
    return {
      cleanConfidence: mean((r) => r.cleanProb),
      cleanLabelConfidenceAfter: mean((r) => r.cleanProbAfter),
      perturbedConfidence: mean((r) => r.advProb),
      marginBefore: mean((r) => r.cleanMargin),
      marginAfter: mean((r) => r.cleanMarginAfter),
    };
  }

  /**
   * Fooling rate per class (the true class when every image has a label, else the clean prediction),
   * with 95% Wilson intervals; classes in index order.
   */
  perClass(name: (i: number) => string): ClassRate[] {
    const byTruth = this.items.every((i) => i.label !== undefined);
    const counts = new Map<number, { images: number; fooled: number }>();
    this.rows.forEach((r, i) => {
      const cls = byTruth ? this.items[i].label! : r.clean;
      const c = counts.get(cls) ?? { images: 0, fooled: 0 };
      c.images++;
      if (r.adv !== r.clean) c.fooled++;
      counts.set(cls, c);
    });
    return [...counts]
      .sort((a, b) => a[0] - b[0])
      .map(([cls, c]) => {
        const rate = c.fooled / c.images;
        const [lo, hi] = wilsonInterval(rate, c.images);
        return {
          class: cls,
          name: name(cls),
          by: byTruth ? 'true label' : 'clean prediction',
          images: c.images,
          fooled: c.fooled,
          rate,
          lo,
          hi,
        };
      });
  }

  /** The most frequent clean -> perturbed label changes. */
  confusions(name: (i: number) => string, top = 10): { from: number; fromName: string; to: number; toName: string; images: number }[] {
    const counts = new Map<string, number>();
    for (const r of this.rows) if (r.adv !== r.clean) counts.set(`${r.clean},${r.adv}`, (counts.get(`${r.clean},${r.adv}`) ?? 0) + 1);
    return [...counts]
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
      .slice(0, top)
      .map(([key, images]) => {
        const [from, to] = key.split(',').map(Number);
        return { from, fromName: name(from), to, toName: name(to), images };
      });
  }

  /** predictions.csv: one line per image (file, true label, clean and perturbed labels with confidences). */
  csv(name: (i: number) => string): string {
    const q = (s: string) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
    const lines = [
      'file,true_label,clean_label,clean_name,clean_confidence,perturbed_label,perturbed_name,perturbed_confidence,clean_label_confidence_after,fooled',
    ];
    this.rows.forEach((r, i) => {
      const item = this.items[i];
      lines.push(
        [
          q(itemName(item)),
          item.label ?? '',
          r.clean,
          q(name(r.clean)),
          r.cleanProb.toFixed(4),
          r.adv,
          q(name(r.adv)),
          r.advProb.toFixed(4),
          r.cleanProbAfter.toFixed(4),
          r.adv !== r.clean ? 1 : 0,
        ].join(','),
      );
    });
    return lines.join('\n') + '\n';
  }
}

export interface ClassRate {
  class: number;
  name: string;
  by: 'true label' | 'clean prediction';
  images: number;
  fooled: number;
  rate: number;
  lo: number;
  hi: number;
}

/** What metrics.json keeps of the per-image facts: mean confidences, rates per class, the most frequent confusions. */
export interface ValidationDetail {
  confidence: {
    cleanConfidence: number;
    cleanLabelConfidenceAfter: number;
    perturbedConfidence: number;
    marginBefore: number;
    marginAfter: number;
  };
  perClass: ClassRate[];
  confusions: { from: number; fromName: string; to: number; toName: string; images: number }[];
}
