/**
 * Where the gradient's time goes (`npm run bench:vjp-profile`): the forward and vector-Jacobian ONNX
 * graphs of a model, each on one 1-thread ONNX Runtime session (one worker's share of the engine), timed
 * side by side, then profiled op by op with ONNX Runtime's own profiler. The vjp graph's nodes are split
 * into its forward half (the nodes the forward graph also has, by name) and its backward half; each half
 * is summed by op kind, and the optimised vjp graph (as ONNX Runtime rewrites it: NCHWc convolutions,
 * Reorder nodes around the ops that need plain NCHW) is counted by op kind. The profiler adds a fixed
 * cost per node, so its sums exceed the timed runs: read them as shares, the timed ratio as the figure.
 *   node dist/bench/vjpProfile.js [--models=mobilenet_v1_0.25_224,...] [--batch=1] [--runs=10]
 * Writes bench/results/vjp-profile.json and .md, and the block of docs/speed.md between
 * `<!-- vjp-profile:begin -->` and `<!-- vjp-profile:end -->`.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../src/engine/backend.js';
import { findCard, loadNet } from '../src/import/load.js';
import { resolveCardPath } from '../src/classifier/card.js';
import { exportOnnx } from '../src/engine/onnx/export.js';
import { loadOrt } from '../src/engine/onnx/runtime.js';
import { parseOnnx } from '../src/import/onnx/parse.js';
import { assetsDir, PROJECT_ROOT } from '../src/paths.js';
import { writeAtomic } from '../src/io/atomic.js';
import { replaceDocBlock } from './docBlock.js';

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const MODELS = (args.get('models') ?? 'mobilenet_v1_0.25_224,mobilenet_v2_1.0_224_quant').split(',');
const B = Number(args.get('batch') ?? 1);
const RUNS = Number(args.get('runs') ?? 10);

type Ort = NonNullable<Awaited<ReturnType<typeof loadOrt>>>;
type Session = Awaited<ReturnType<Ort['InferenceSession']['create']>>;

/** Milliseconds per node kind (per run) and the total. */
interface Split {
  totalMs: number;
  byOp: Record<string, number>;
}

interface Row {
  model: string;
  batch: number;
  forwardMs: number;
  vjpMs: number;
  ratio: number;
  profiled: { forward: Split; vjpForwardHalf: Split; vjpBackwardHalf: Split };
  optimisedVjpNodes: Record<string, number>;
}

interface ProfileEvent {
  cat: string;
  name: string;
  dur: number;
  args: { op_name: string };
}

/** Kernel time per node name (microseconds summed over every profiled run). */
function kernelTimes(file: string): Map<string, { op: string; us: number }> {
  const out = new Map<string, { op: string; us: number }>();
  for (const e of JSON.parse(readFileSync(file, 'utf8')) as ProfileEvent[]) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
    const name = e.name.slice(0, -'_kernel_time'.length);
    const entry = out.get(name) ?? { op: e.args.op_name, us: 0 };
    entry.us += e.dur;
    out.set(name, entry);
  }
  return out;
}

function split(times: Map<string, { op: string; us: number }>, keep: (name: string) => boolean, runs: number): Split {
  const byOp: Record<string, number> = {};
  let total = 0;
  for (const [name, { op, us }] of times)
    if (keep(name)) {
      byOp[op] = (byOp[op] ?? 0) + us / 1000 / runs;
      total += us / 1000 / runs;
    }
  return { totalMs: total, byOp: Object.fromEntries(Object.entries(byOp).sort((a, b) => b[1] - a[1])) };
}

/** Milliseconds of one call. */
async function msOf(run: () => Promise<unknown>): Promise<number> {
  const s = performance.now();
  await run();
  return performance.now() - s;
}

async function profileModel(ort: Ort, name: string, assets: string, dir: string): Promise<Row> {
  const card = findCard(name, {}, assets);
  const net = await loadNet(card, resolveCardPath(card, card.model, assets), assets);
  const shape = card.inputShape as [number, number, number];
  const models = exportOnnx(net, shape, ['forward', 'vjp']);
  const size = shape[0] * shape[1] * shape[2];
  // Fixed patterns of pixels and cotangents: the graphs' cost does not depend on the values.
  const x = new ort.Tensor(
    'float32',
    Float32Array.from({ length: B * size }, (_, i) => (i * 7919) % 256),
    [B, ...shape],
  );
  const dy = new ort.Tensor(
    'float32',
    Float32Array.from({ length: B * models.classes }, (_, i) => ((i * 31) % 17) / 17 - 0.5),
    [B, 1, models.classes],
  );
  const base = { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' as const, logSeverityLevel: 3 as const };
  const session = (bytes: Uint8Array, extra: object) => ort.InferenceSession.create(bytes, { ...base, ...extra });
  const timed = { forward: await session(models.forward, {}), vjp: await session(models.vjp, {}) };
  // One warm-up each, then the best of RUNS interleaved, so a burst of other work on the machine hits both.
  const runForward = () => timed.forward.run({ x });
  const runVjp = () => timed.vjp.run({ x, dy });
  await runForward();
  await runVjp();
  let forwardMs = Infinity;
  let vjpMs = Infinity;
  for (let i = 0; i < RUNS; i++) {
    forwardMs = Math.min(forwardMs, await msOf(runForward));
    vjpMs = Math.min(vjpMs, await msOf(runVjp));
  }
  await Promise.all([timed.forward.release(), timed.vjp.release()]);
  const profiled = async (kind: 'forward' | 'vjp', feeds: Record<string, InstanceType<Ort['Tensor']>>) => {
    const s: Session = await session(models[kind], {
      enableProfiling: true,
      profileFilePrefix: join(dir, `${name}-${kind}`),
      optimizedModelFilePath: join(dir, `${name}-${kind}.optimised.onnx`),
    });
    for (let i = 0; i <= RUNS; i++) await s.run(feeds);
    s.endProfiling();
    await s.release();
    // onnxruntime-node writes PREFIX_<timestamp>.json and does not return the name.
    const file = readdirSync(dir).find((f) => f.startsWith(`${name}-${kind}_`) && f.endsWith('.json'));
    if (!file) throw new Error(`ONNX Runtime wrote no profile for ${name} ${kind} in ${dir}`);
    return kernelTimes(join(dir, file));
  };
  const forwardTimes = await profiled('forward', { x });
  const vjpTimes = await profiled('vjp', { x, dy });
  const optimised = parseOnnx(readFileSync(join(dir, `${name}-vjp.optimised.onnx`)), `${name} optimised vjp graph`);
  const counts: Record<string, number> = {};
  for (const n of optimised.nodes) counts[n.opType] = (counts[n.opType] ?? 0) + 1;
  return {
    model: name,
    batch: B,
    forwardMs: forwardMs / B,
    vjpMs: vjpMs / B,
    ratio: vjpMs / forwardMs,
    profiled: {
      forward: split(forwardTimes, () => true, (RUNS + 1) * B),
      vjpForwardHalf: split(vjpTimes, (n) => forwardTimes.has(n), (RUNS + 1) * B),
      vjpBackwardHalf: split(vjpTimes, (n) => !forwardTimes.has(n), (RUNS + 1) * B),
    },
    optimisedVjpNodes: Object.fromEntries(Object.entries(counts).sort((a, b) => b[1] - a[1])),
  };
}

function markdown(rows: Row[]): string {
  const ms = (v: number) => v.toFixed(2);
  const top = (s: Split, k = 8) =>
    Object.entries(s.byOp)
      .slice(0, k)
      .map(([op, v]) => `${op} ${((100 * v) / s.totalMs).toFixed(0)}%`)
      .join(', ');
  const lines = [
    `One 1-thread ONNX Runtime session, batch ${rows[0]?.batch ?? B}, ms per image (\`npm run bench:vjp-profile\`).`,
    '',
    '| model | forward | 1 gradient | gradient / forward |',
    '|---|---|---|---|',
    ...rows.map((r) => `| ${r.model} | ${ms(r.forwardMs)} | ${ms(r.vjpMs)} | ${r.ratio.toFixed(2)}x |`),
    '',
    'Profiled time (shares of each half; the profiler inflates small nodes):',
    '',
  ];
  for (const r of rows) {
    const p = r.profiled;
    lines.push(
      `- **${r.model}**: forward graph ${ms(p.forward.totalMs)} ms; vjp forward half ${ms(p.vjpForwardHalf.totalMs)} ms ` +
        `(${top(p.vjpForwardHalf, 3)}); vjp backward half ${ms(p.vjpBackwardHalf.totalMs)} ms (${top(p.vjpBackwardHalf)}). ` +
        `Optimised vjp graph: ${Object.entries(r.optimisedVjpNodes)
          .slice(0, 10)
          .map(([op, n]) => `${n} ${op}`)
          .join(', ')}.`,
    );
  }
  return lines.join('\n') + '\n';
}

async function main(): Promise<void> {
  const ort = await loadOrt();
  if (!ort) throw new Error('onnxruntime-node does not load on this platform');
  await initBackend();
  const assets = assetsDir();
  const dir = mkdtempSync(join(tmpdir(), 'uap-vjp-profile-'));
  try {
    const rows: Row[] = [];
    for (const name of MODELS) {
      const row = await profileModel(ort, name, assets, dir);
      console.log(
        `${name}: forward ${row.forwardMs.toFixed(2)} ms/img, gradient ${row.vjpMs.toFixed(2)} ms/img (${row.ratio.toFixed(2)}x)`,
      );
      rows.push(row);
    }
    const results = join(PROJECT_ROOT, 'bench', 'results');
    mkdirSync(results, { recursive: true });
    writeAtomic(join(results, 'vjp-profile.json'), JSON.stringify({ date: new Date().toISOString(), rows }, null, 2) + '\n');
    const md = markdown(rows);
    writeAtomic(join(results, 'vjp-profile.md'), md);
    replaceDocBlock(join(PROJECT_ROOT, 'docs', 'speed.md'), 'vjp-profile', md);
    console.log(md);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
