/**
 * The fooling graph (paper, Sec. 4 / Fig. 7): for each clean label i, where its fooled images go. An
 * edge i -> j when j is where most fooled images of label i land (the plurality); dominant labels
 * attract many edges and a large share of all fooled images.
 */

export interface GraphEdge {
  from: number;
  to: number;
  /** Fooled images of `from` that land on `to`. */
  count: number;
  /** count / fooled images of `from`. */
  fraction: number;
}

export interface GraphLabel {
  label: number;
  name: string;
  /** Edges pointing at this label. */
  inDegree: number;
  /** Fooled images (of any clean label) that land on this label. */
  received: number;
  /** received / all fooled images. */
  share: number;
}

export interface FoolingGraph {
  images: number;
  fooled: number;
  edges: GraphEdge[];
  /** Labels that receive fooled images, most received first. */
  dominant: GraphLabel[];
  /** Weakly connected components of the edge graph (label lists, largest first). */
  components: number[][];
}

export function foolingGraph(clean: Int32Array, adv: Int32Array, names: (i: number) => string = (i) => `#${i}`): FoolingGraph {
  const flows = new Map<number, Map<number, number>>();
  const received = new Map<number, number>();
  let fooled = 0;
  clean.forEach((c, i) => {
    const a = adv[i];
    if (a === c) return;
    fooled++;
    const row = flows.get(c) ?? new Map<number, number>();
    row.set(a, (row.get(a) ?? 0) + 1);
    flows.set(c, row);
    received.set(a, (received.get(a) ?? 0) + 1);
  });
  const edges: GraphEdge[] = [];
  for (const [from, row] of [...flows].sort((a, b) => a[0] - b[0])) {
    let to = -1;
    let count = 0;
    let total = 0;
    // Plurality destination; ties go to the smaller label (deterministic).
    for (const [j, n] of [...row].sort((a, b) => a[0] - b[0])) {
      total += n;
      if (n > count) [to, count] = [j, n];
    }
    edges.push({ from, to, count, fraction: count / total });
  }
  const inDegree = new Map<number, number>();
  for (const e of edges) inDegree.set(e.to, (inDegree.get(e.to) ?? 0) + 1);
  const dominant = [...received]
    .map(([label, n]) => ({ label, name: names(label), inDegree: inDegree.get(label) ?? 0, received: n, share: n / fooled }))
    .sort((a, b) => b.received - a.received || b.inDegree - a.inDegree || a.label - b.label);
  return { images: clean.length, fooled, edges, dominant, components: components(edges) };
}

/** Weakly connected components by union-find. */
function components(edges: GraphEdge[]): number[][] {
  const parent = new Map<number, number>();
  const find = (x: number): number => {
    if (!parent.has(x)) parent.set(x, x);
    const p = parent.get(x)!;
    if (p === x) return x;
    const r = find(p);
    parent.set(x, r);
    return r;
  };
  for (const e of edges) parent.set(find(e.from), find(e.to));
  const groups = new Map<number, number[]>();
  for (const x of parent.keys()) {
    const r = find(x);
    groups.set(r, [...(groups.get(r) ?? []), x]);
  }
  return [...groups.values()].map((g) => g.sort((a, b) => a - b)).sort((a, b) => b.length - a.length || a[0] - b[0]);
}

const quote = (s: string) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

/**
 * Graphviz DOT of the dominant labels and the labels that flow into them, most dominant first, up to
 * `maxNodes` labels so the picture stays readable (the JSON keeps the whole graph): nodes named by
 * label, edge width by count, the top `highlight` dominant labels filled.
 */
export function graphToDot(g: FoolingGraph, names: (i: number) => string = (i) => `#${i}`, highlight = 5, maxNodes = 60): string {
  const top = new Set(g.dominant.slice(0, highlight).map((d) => d.label));
  const nodes = new Set<number>();
  // Each dominant label brings its strongest inflows, at most a fair share of the picture.
  const perLabel = Math.max(3, Math.floor(maxNodes / Math.max(1, Math.min(highlight, g.dominant.length))) - 1);
  for (const d of g.dominant) {
    if (nodes.size >= maxNodes) break;
    nodes.add(d.label);
    const inflows = g.edges
      .filter((e) => e.to === d.label && e.from !== d.label)
      .sort((a, b) => b.count - a.count)
      .slice(0, perLabel);
    for (const e of inflows) if (nodes.size < maxNodes) nodes.add(e.from);
  }
  const shown = g.edges.filter((e) => nodes.has(e.from) && nodes.has(e.to));
  const maxCount = Math.max(1, ...shown.map((e) => e.count));
  const lines = [
    'digraph fooling {',
    '  graph [overlap=false, splines=true, sep="+6", fontname="Helvetica"];',
    '  node [shape=box, style="rounded", fontname="Helvetica", fontsize=10];',
    '  edge [fontname="Helvetica", fontsize=8, fontcolor="#555555"];',
  ];
  // Labels that draw images from many others are drawn larger (font 9 to 18 by in-degree).
  const inDegree = new Map<number, number>();
  for (const e of g.edges) if (e.from !== e.to) inDegree.set(e.to, (inDegree.get(e.to) ?? 0) + 1);
  const maxIn = Math.max(1, ...inDegree.values());
  for (const n of [...nodes].sort((a, b) => a - b)) {
    const style = top.has(n) ? ', style="rounded,filled", fillcolor="#f4a261"' : '';
    const size = 9 + 9 * Math.sqrt((inDegree.get(n) ?? 0) / maxIn);
    lines.push(`  n${n} [label=${quote(names(n).split(',')[0])}, fontsize=${size.toFixed(1)}${style}];`);
  }
  const all = new Set(g.edges.flatMap((e) => [e.from, e.to])).size;
  const caption = [
    'arrow: clean label -> label with v',
    '(the number of images on it)',
    `orange: the ${top.size} dominant labels`,
    'larger: more labels lose images to it',
    ...(nodes.size < all ? [`${nodes.size} of ${all} labels shown:`, 'the dominant ones and their inflows'] : []),
  ];
  lines.push(`  label="${caption.map((c) => quote(c).slice(1, -1)).join('\\n')}"; labelloc=t; fontsize=10;`);
  for (const e of shown)
    lines.push(
      `  n${e.from} -> n${e.to} [penwidth=${(0.5 + (2.5 * e.count) / maxCount).toFixed(2)}, label=${quote(String(e.count))}, tooltip=${quote(`${e.count} images`)}];`,
    );
  lines.push('}');
  return lines.join('\n') + '\n';
}

/** SVG of a DOT graph, laid out by Graphviz (compiled to wasm, @viz-js/viz). */
export async function dotToSvg(dot: string): Promise<string> {
  const { instance } = await import('@viz-js/viz');
  const viz = await instance();
  // neato: dominant labels become hubs with their inflows around them (the paper's Fig. 7 look).
  return viz.renderString(dot, { format: 'svg', engine: 'neato' });
}
