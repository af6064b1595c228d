import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

/** Renders a Vega-Lite spec to a standalone SVG string (headless: no canvas, text widths estimated). */
export async function vegaLiteToSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

export type { TopLevelSpec };

/**
 * The figures of one report, drawn once: inlined in the HTML and kept as standalone SVG files (vector,
 * for a paper) under unique names.
 */
export class ReportFigures {
  readonly files: { name: string; svg: string }[] = [];

  /** Draws a spec, keeps it as `name`.svg and returns the SVG for inlining. */
  async draw(name: string, spec: TopLevelSpec): Promise<string> {
    return this.keep(name, await vegaLiteToSvg(spec));
  }

  /** Keeps an SVG drawn elsewhere (an analysis's file) under `name`.svg. */
  keep(name: string, svg: string): string {
    const base = name.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '') || 'figure';
    let unique = base;
    for (let k = 2; this.files.some((f) => f.name === `${unique}.svg`); k++) unique = `${base}-${k}`;
    this.files.push({ name: `${unique}.svg`, svg });
    return svg;
  }
}

/** Rates (0..1) against a step (pass, round): one line per `what` (dashed where `dashed`: references such as noise), percent axis. */
export function rateLines(
  values: { x: number; rate: number; what?: string; dashed?: boolean }[],
  xTitle: string,
  size = { width: 360, height: 200 },
  yTitle: string | null = null,
  /** Whole numbers on x (passes, sizes of X): integer ticks on an axis from 0, so one point is not alone on "1.000000". */
  xWhole = false,
): TopLevelSpec {
  const most = Math.max(1, ...values.map((v) => v.x));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    data: { values },
    ...size,
    mark: { type: 'line', point: true },
    encoding: {
      x: {
        field: 'x',
        type: 'quantitative',
        title: xTitle,
        axis: xWhole ? { tickMinStep: 1, format: 'd' } : { tickMinStep: 1 },
        ...(xWhole ? { scale: { domain: [0, most], nice: false } } : {}),
      },
      y: { field: 'rate', type: 'quantitative', title: yTitle, scale: { domain: [0, 1] }, axis: { format: '%' } },
      ...(values.some((v) => v.what) ? { color: { field: 'what', type: 'nominal', title: null, legend: { labelLimit: 260 } } } : {}),
      ...(values.some((v) => v.dashed)
        ? {
            strokeDash: {
              field: 'dashed',
              type: 'nominal',
              legend: null,
              scale: {
                domain: [false, true],
                range: [
                  [1, 0],
                  [5, 3],
                ],
              },
            },
          }
        : {}),
    },
  } as TopLevelSpec;
}
