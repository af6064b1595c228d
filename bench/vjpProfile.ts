/**
 * Where the gradient's time goes (`npm run bench:vjp-profile`): the forward and vector-Jacobian ONNX
 * graphs of a model, each on one 1-thread ONNX Runtime session (one worker's share of the engine), timed
 * side by side with 1 and with 10 cotangents per image (one gradient; DeepFool's ten candidate classes),
 * then profiled op by op with ONNX Runtime's own profiler. The vjp graph's nodes are split
 * into its forward half (the nodes written before the backward rows begin) and its backward half; each half
 * is summed by op kind, and the optimised vjp graph (as ONNX Runtime rewrites it: NCHWc convolutions,
 * Reorder nodes around the ops that need plain NCHW) is counted by op kind. In the same timing loop: the
 * graph as written before blocking, and two rewrites that price the activations' derivative factors
 * (bench/factorPasses.ts: their products alone, and none). The profiler adds a fixed
 * cost per node, so its sums exceed the timed runs: read them as shares, the timed ratio as the figure.
 *   node dist/bench/vjpProfile.js [--models=mobilenet_v1_0.25_224,...] [--zoo=DIR [--zoo-models=resnet18,...]]
 *     [--batch=1] [--runs=10]
 * Zoo models are the torchvision exports of `scripts/make-onnx-fixtures.py --zoo DIR` (`UAP_ZOO`), read
 * with torchvision's normalisation; they are skipped when the folder is missing.
 * Writes bench/results/vjp-profile.json and .md, and the block of docs/speed.md between
 * `<!-- vjp-profile:begin -->` and `<!-- vjp-profile:end -->`.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { initBackend } from '../src/engine/backend.js';
import { exportOnnx } from '../src/engine/onnx/export.js';
import { loadOrt } from '../src/engine/onnx/runtime.js';
import { nchwcBlock } from '../src/engine/onnx/nchwc.js';
import { parseOnnx } from '../src/import/onnx/parse.js';
import { assetsDir, PROJECT_ROOT } from '../src/paths.js';
import { writeAtomic } from '../src/io/atomic.js';
import { replaceDocBlock } from './docBlock.js';
import { benchNet, zooFiles } from './torchvision.js';
import { withoutFactorPasses } from './factorPasses.js';

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const MODELS = (args.get('models') ?? 'mobilenet_v1_0.25_224,mobilenet_v2_1.0_224_quant').split(',');
const B = Number(args.get('batch') ?? 1);
const RUNS = Number(args.get('runs') ?? 10);
const ZOO = args.get('zoo') ?? process.env.UAP_ZOO;
const ZOO_MODELS = (args.get('zoo-models') ?? 'resnet18,efficientnet_b0,googlenet').split(',');
/** Cotangents per image of the second timing: DeepFool's candidate classes. */
const MANY = 10;

type Ort = NonNullable<Awaited<ReturnType<typeof loadOrt>>>;
type Session = Awaited<ReturnType<Ort['InferenceSession']['create']>>;

/** 1 and MANY gradients, ms (per call, or per image in a Row). */
interface Timing {
  vjpMs: number;
  manyMs: number;
}

type Variant = 'vjp' | 'unblocked' | 'prebuilt' | 'none';

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
  /** MANY cotangents per image: ms per image, and per backward row beyond the one-gradient run. */
  manyMs: number;
  msPerExtraRow: number;
  /**
   * The gradient graph as written before it was blocked (UAP_NCHWC=off), timed in the same loop: 1 and
   * MANY gradients, ms per image (absent where this machine's ONNX Runtime has no blocked kernels).
   */
  unblocked?: Timing;
  /**
   * The activations' derivative factors (bench/factorPasses.ts), timed in the same loop: how many the graph
   * builds, and the gradient with their products but no factor built, and with none (absent where it has none).
   */
  factors?: { count: number; prebuilt: Timing; none: Timing };
  profiled: { forward: Split; vjpForwardHalf: Split; vjpBackwardHalf: Split; manyBackwardHalf: Split };
  /** The backward half's slowest nodes (one gradient): op, input shape, ms. */
  slowest: { op: string; shape: string; ms: number }[];
  optimisedVjpNodes: Record<string, number>;
}

interface ProfileEvent {
  cat: string;
  name: string;
  dur: number;
  args: { op_name: string; input_type_shape?: Record<string, number[]>[] };
}

type Times = Map<string, { op: string; us: number; shape: string }>;

/** Runs of a profiled session left out of its sums: the first ones fill ONNX Runtime's arena (page faults). */
const WARM_UP = 2;

/**
 * Kernel time per node name (microseconds summed over the profiled runs after WARM_UP), with its
 * first input's shape.
 */
function kernelTimes(file: string): Times {
  const out: Times = new Map();
  const seen = new Map<string, number>();
  for (const e of JSON.parse(readFileSync(file, 'utf8')) as ProfileEvent[]) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
    const name = e.name.slice(0, -'_kernel_time'.length);
    seen.set(name, (seen.get(name) ?? 0) + 1);
    if (seen.get(name)! <= WARM_UP) continue;
    const first = e.args.input_type_shape?.[0];
    const entry = out.get(name) ?? { op: e.args.op_name, us: 0, shape: first ? `[${Object.values(first)[0].join(',')}]` : '' };
    entry.us += e.dur;
    out.set(name, entry);
  }
  return out;
}

function split(times: Times, keep: (name: string) => boolean, runs: number): Split {
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
  const { card, net } = await benchNet(name, assets);
  const shape = card.inputShape as [number, number, number];
  const models = exportOnnx(net, shape, ['forward', 'vjp'], 'cpu', nchwcBlock());
  const unblockedVjp = nchwcBlock() ? exportOnnx(net, shape, ['vjp'], 'cpu', 0).vjp : undefined;
  const size = shape[0] * shape[1] * shape[2];
  // Fixed patterns of pixels and cotangents: the graphs' cost does not depend on the values.
  const x = new ort.Tensor(
    'float32',
    Float32Array.from({ length: B * size }, (_, i) => (i * 7919) % 256),
    [B, ...shape],
  );
  const cotangents = (k: number) =>
    new ort.Tensor(
      'float32',
      Float32Array.from({ length: B * k * models.classes }, (_, i) => ((i * 31) % 17) / 17 - 0.5),
      [B, k, models.classes],
    );
  const dy = cotangents(1);
  const dyMany = cotangents(MANY);
  const base = { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' as const, logSeverityLevel: 3 as const };
  const session = (bytes: Uint8Array, extra: object) => ort.InferenceSession.create(bytes, { ...base, ...extra });
  const forward = await session(models.forward, {});
  const prebuilt = withoutFactorPasses(models.vjp, 'prebuilt');
  // Each gradient graph timed with 1 and MANY cotangents: ours, and where they apply the one written
  // before blocking and the two factor counterfactuals.
  const graphs: Partial<Record<Variant, Session>> = { vjp: await session(models.vjp, {}) };
  if (unblockedVjp) graphs.unblocked = await session(unblockedVjp, {});
  if (prebuilt.factors) {
    graphs.prebuilt = await session(prebuilt.bytes, {});
    graphs.none = await session(withoutFactorPasses(models.vjp, 'none').bytes, {});
  }
  const variants = Object.entries(graphs) as [Variant, Session][];
  const runForward = () => forward.run({ x });
  await runForward();
  for (const [, s] of variants) await Promise.all([s.run({ x, dy }), s.run({ x, dy: dyMany })]);
  // The best of RUNS interleaved, so a burst of other work on the machine hits every graph alike.
  let forwardMs = Infinity;
  const best = Object.fromEntries(variants.map(([k]) => [k, { vjpMs: Infinity, manyMs: Infinity }])) as Record<Variant, Timing>;
  for (let i = 0; i < RUNS; i++) {
    forwardMs = Math.min(forwardMs, await msOf(runForward));
    for (const [k, s] of variants) {
      best[k].vjpMs = Math.min(best[k].vjpMs, await msOf(() => s.run({ x, dy })));
      if (i < Math.ceil(RUNS / 3)) best[k].manyMs = Math.min(best[k].manyMs, await msOf(() => s.run({ x, dy: dyMany })));
    }
  }
  await Promise.all([forward.release(), ...variants.map(([, s]) => s.release())]);
  const perImage = (t: Timing): Timing => ({ vjpMs: t.vjpMs / B, manyMs: t.manyMs / B });
  const { vjpMs, manyMs } = best.vjp;
  const tag = basename(name);
  const profiled = async (kind: 'forward' | 'vjp', feeds: Record<string, InstanceType<Ort['Tensor']>>, label: string = kind) => {
    const s: Session = await session(models[kind], {
      enableProfiling: true,
      profileFilePrefix: join(dir, `${tag}-${label}`),
      optimizedModelFilePath: join(dir, `${tag}-${label}.optimised.onnx`),
    });
    for (let i = 0; i < WARM_UP + RUNS; i++) await s.run(feeds);
    s.endProfiling();
    await s.release();
    // onnxruntime-node writes PREFIX_<timestamp>.json and does not return the name.
    const file = readdirSync(dir).find((f) => f.startsWith(`${tag}-${label}_`) && f.endsWith('.json'));
    if (!file) throw new Error(`ONNX Runtime wrote no profile for ${name} ${label} in ${dir}`);
    return kernelTimes(join(dir, file));
  };
  const forwardTimes = await profiled('forward', { x });
  const vjpTimes = await profiled('vjp', { x, dy });
  const manyTimes = await profiled('vjp', { x, dy: dyMany }, 'many');
  const optimised = parseOnnx(readFileSync(join(dir, `${tag}-vjp.optimised.onnx`)), `${name} optimised vjp graph`);
  // The exporter names nodes by a running count and writes the forward half first, up to the reshape
  // of dy ('dy_rows_<count>'): a lower count is the forward half (nodes ONNX Runtime adds go with the
  // backward half; the forward graph's own names no longer line up once the gradient graph is blocked).
  const cut = Number(/dy_rows_(\d+)/.exec(new TextDecoder().decode(models.vjp))?.[1] ?? Infinity);
  const inForwardHalf = (n: string) => Number(/_(\d+)$/.exec(n)?.[1] ?? Infinity) < cut;
  const counts: Record<string, number> = {};
  for (const n of optimised.nodes) counts[n.opType] = (counts[n.opType] ?? 0) + 1;
  const runs = RUNS * B;
  const slowest = [...vjpTimes.entries()]
    .filter(([n]) => !inForwardHalf(n))
    .sort((a, b) => b[1].us - a[1].us)
    .slice(0, 5)
    .map(([, t]) => ({ op: t.op, shape: t.shape, ms: t.us / 1000 / runs }));
  return {
    model: tag.replace(/\.onnx$/, ''),
    batch: B,
    forwardMs: forwardMs / B,
    vjpMs: vjpMs / B,
    ratio: vjpMs / forwardMs,
    manyMs: manyMs / B,
    msPerExtraRow: (manyMs - vjpMs) / B / (MANY - 1),
    ...(best.unblocked ? { unblocked: perImage(best.unblocked) } : {}),
    ...(best.prebuilt && best.none
      ? { factors: { count: prebuilt.factors, prebuilt: perImage(best.prebuilt), none: perImage(best.none) } }
      : {}),
    profiled: {
      forward: split(forwardTimes, () => true, runs),
      vjpForwardHalf: split(vjpTimes, inForwardHalf, runs),
      vjpBackwardHalf: split(vjpTimes, (n) => !inForwardHalf(n), runs),
      manyBackwardHalf: split(manyTimes, (n) => !inForwardHalf(n), runs),
    },
    slowest,
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
    `One 1-thread ONNX Runtime session, batch ${rows[0]?.batch ?? B}, ms per image (\`npm run bench:vjp-profile\`; ` +
      `zoo models: torchvision exports with seeded weights; ONNX Runtime's channel block on this machine: ` +
      `${nchwcBlock() === 16 ? '16, AVX-512' : nchwcBlock() === 8 ? '8, AVX2' : 'none'}). "Each further row": what one more ` +
      `backward row costs, from the ${MANY}-cotangent run.`,
    '',
    `| model | forward | 1 gradient | gradient / forward | ${MANY} gradients | each further row / forward |`,
    '|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.model} | ${ms(r.forwardMs)} | ${ms(r.vjpMs)} | ${r.ratio.toFixed(2)}x | ${ms(r.manyMs)} | ${(r.msPerExtraRow / r.forwardMs).toFixed(2)}x |`,
    ),
    '',
    ...(rows.some((r) => r.unblocked)
      ? [
          `The gradient graph as written before it was blocked (\`UAP_NCHWC=off\`), timed in the same loop (ms per image; ` +
            `speed-up: unblocked / blocked):`,
          '',
          `| model | 1 gradient, unblocked | speed-up | ${MANY} gradients, unblocked | speed-up |`,
          '|---|---|---|---|---|',
          ...rows
            .filter((r) => r.unblocked)
            .map(
              (r) =>
                `| ${r.model} | ${ms(r.unblocked!.vjpMs)} | ${(r.unblocked!.vjpMs / r.vjpMs).toFixed(2)}x | ` +
                `${ms(r.unblocked!.manyMs)} | ${(r.unblocked!.manyMs / r.manyMs).toFixed(2)}x |`,
            ),
          '',
        ]
      : []),
    ...(rows.some((r) => r.factors)
      ? [
          `What the activations' derivative factors cost (the 0/1 masks of ReLU-like activations, SiLU's floats), timed ` +
            `in the same loop on rewrites of the same graph that compute wrong values (\`bench/factorPasses.ts\`): ` +
            `"prebuilt" multiplies the rows by the forward value each factor is computed from and builds none (the ` +
            `products alone), "none" leaves the factors out (ms per image; in brackets, over the forward):`,
          '',
          `| model | factors | 1 gradient | factors prebuilt | no factors | ${MANY} gradients | factors prebuilt | no factors |`,
          '|---|---|---|---|---|---|---|---|',
          ...rows
            .filter((r) => r.factors)
            .map((r) => {
              const over = (v: number) => `${ms(v)} (${(v / r.forwardMs).toFixed(2)}x)`;
              const { count, prebuilt, none } = r.factors!;
              return (
                `| ${r.model} | ${count} | ${over(r.vjpMs)} | ${over(prebuilt.vjpMs)} | ${over(none.vjpMs)} | ` +
                `${ms(r.manyMs)} | ${ms(prebuilt.manyMs)} | ${ms(none.manyMs)} |`
              );
            }),
          '',
        ]
      : []),
    `Profiled time (shares of each half, after ${WARM_UP} warm-up runs whose page faults would swell the largest ` +
      'tensors; the profiler inflates small nodes; nodes ONNX Runtime adds, such as its own blocked stem convolution, ' +
      'count with the backward half):',
    '',
  ];
  for (const r of rows) {
    const p = r.profiled;
    lines.push(
      `- **${r.model}**: forward graph ${ms(p.forward.totalMs)} ms; vjp forward half ${ms(p.vjpForwardHalf.totalMs)} ms ` +
        `(${top(p.vjpForwardHalf, 3)}); vjp backward half ${ms(p.vjpBackwardHalf.totalMs)} ms (${top(p.vjpBackwardHalf)}); ` +
        `with ${MANY} cotangents ${ms(p.manyBackwardHalf.totalMs)} ms (${top(p.manyBackwardHalf, 6)}). ` +
        `Slowest backward nodes: ${r.slowest.map((n) => `${n.op} ${n.shape} ${ms(n.ms)} ms`).join(', ')}. ` +
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
    const zoo = zooFiles('bench:vjp-profile', ZOO, ZOO_MODELS);
    for (const name of [...MODELS, ...zoo]) {
      const row = await profileModel(ort, name, assets, dir);
      console.log(
        `${row.model}: forward ${row.forwardMs.toFixed(2)} ms/img, gradient ${row.vjpMs.toFixed(2)} ms/img (${row.ratio.toFixed(2)}x), ` +
          `${MANY} gradients ${row.manyMs.toFixed(2)} ms/img`,
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
