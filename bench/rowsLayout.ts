/**
 * Where a gradient's backward rows should lie (`npm run bench:rows-layout`): one MobileNet v2
 * inverted-residual block's backward (1x1 expand, 3x3 depthwise, 1x1 project, a ReLU6 mask after the
 * first two), run on one 1-thread ONNX Runtime session with K backward rows of one image, laid out two
 * ways:
 * - on the batch axis, as the engine does: rows [K, C, H, W], each mask multiplied per image through
 *   a reshape to [1, K, n] x [1, 1, n], which ONNX Runtime runs in plain NCHW between reorders;
 * - on the channel axis: rows [1, K*C, H, W], grouped convolutions (K groups; K*C for the
 *   depthwise one) and each mask tiled K times by a channel Concat, so that every op runs blocked;
 * - on the batch axis written in ONNX Runtime's blocked layout directly (onnx/nchwc.ts, as the engine
 *   now writes its gradient graphs): blocked convolutions, each mask multiplied into the blocked rows
 *   through the same reshape, no reorders between.
 * In both, the mask comes out of a blocked 1x1 depthwise convolution (a stand-in for the forward
 * output): in the engine, masks are comparisons in plain NCHW and would need one blocked copy per
 * image more. Weights and pixels are fixed patterns (the cost does not depend on them); the two
 * layouts' outputs are checked equal before timing. Best of `--runs` interleaved runs.
 *   node dist/bench/rowsLayout.js [--rows=10] [--runs=15]
 * Writes bench/results/rows-layout.json and .md.
 */
import { join } from 'node:path';
import { NCHWC_DOMAIN, OnnxGraph } from '../src/engine/onnx/builder.js';
import { detectNchwcBlock, reorderFilter } from '../src/engine/onnx/nchwc.js';
import { loadOrt } from '../src/engine/onnx/runtime.js';
import { PROJECT_ROOT } from '../src/paths.js';
import { writeAtomic } from '../src/io/atomic.js';

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const K = Number(args.get('rows') ?? 10);
const RUNS = Number(args.get('runs') ?? 15);
/** MobileNet v2's block at 56x56: 24 channels in and out, expanded 6x. */
const [C0, C, H, W] = [24, 144, 56, 56];

const pattern = (n: number, seed: number) =>
  Float32Array.from({ length: n }, (_, i) => (((i * 7919 + seed * 104729) % 997) / 997 - 0.5) * 0.2);
/** K copies of an array along its first axis (the grouped convolutions' filters). */
const tiled = (a: Float32Array) => Float32Array.from({ length: a.length * K }, (_, i) => a[i % a.length]);

// The filters of the block's input gradients, in the order the backward runs them.
const intoExpanded = pattern(C * C0, 1); // the projection's: [C, C0, 1, 1]
const depthwise = pattern(C * 9, 2); // [C, 1, 3, 3]
const intoInput = pattern(C0 * C, 3); // the expansion's: [C0, C, 1, 1]

/** One block's backward; `channels` puts the K rows on the channel axis. */
function blockGraph(channels: boolean): Uint8Array {
  const g = new OnnxGraph();
  const groups = channels ? K : 1;
  const w = (data: Float32Array, dims: number[]) => g.floats(channels ? tiled(data) : data, [dims[0] * groups, ...dims.slice(1)]);
  // The mask's source, blocked like a forward output: a 1x1 depthwise convolution of the input.
  const mask = g.op('Conv', ['m', g.floats(new Float32Array(C).fill(1), [C, 1, 1, 1])], { group: C });
  const n = C * H * W;
  const masked = (rows: string) =>
    channels
      ? g.op('Mul', [rows, g.op('Concat', Array<string>(K).fill(mask), { axis: 1 })])
      : g.op('Reshape', [
          g.op('Mul', [g.op('Reshape', [rows, g.ints([1, K, n])]), g.op('Reshape', [mask, g.ints([1, 1, n])])]),
          g.ints([K, C, H, W]),
        ]);
  const a = masked(g.op('Conv', ['x', w(intoExpanded, [C, C0, 1, 1])], { group: groups }));
  const b = masked(g.op('Conv', [a, w(depthwise, [C, 1, 3, 3])], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], group: C * groups }));
  const z = g.op('Conv', [b, w(intoInput, [C0, C, 1, 1])], { group: groups });
  g.opMulti('Identity', [z], ['z']);
  return g.encode(
    [
      ['x', channels ? [1, K * C0, H, W] : [K, C0, H, W]],
      ['m', [1, C, H, W]],
    ],
    [['z', channels ? [1, K * C0, H, W] : [K, C0, H, W]]],
  );
}

/**
 * Rows on the batch axis, written in ONNX Runtime's blocked layout (block b): blocked convolutions,
 * each mask multiplied through a reshape of the blocked rows to [1, K, n] (the order of the elements
 * does not matter to an element-wise product when both operands share it): no reorders between.
 */
function blockedGraph(b: number): Uint8Array {
  const g = new OnnxGraph();
  const conv = (x: string, data: Float32Array, dims: number[], attrs: Record<string, number | number[]>) =>
    g.opIn(NCHWC_DOMAIN, 'Conv', [x, g.floats(reorderFilter(data, dims, b), dims)], attrs);
  const mask = g.opIn(NCHWC_DOMAIN, 'ReorderInput', ['m']);
  const n = C * H * W;
  const masked = (rows: string) =>
    g.op('Reshape', [
      g.op('Mul', [g.op('Reshape', [rows, g.ints([1, K, n])]), g.op('Reshape', [mask, g.ints([1, 1, n])])]),
      g.ints([K, C, H, W]),
    ]);
  const x = g.opIn(NCHWC_DOMAIN, 'ReorderInput', ['x']);
  const a = masked(conv(x, intoExpanded, [C, C0, 1, 1], { kernel_shape: [1, 1], group: 1 }));
  const d = masked(conv(a, depthwise, [C, 1, 3, 3], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], group: C }));
  const z = conv(d, intoInput, [C0, C, 1, 1], { kernel_shape: [1, 1], group: 1 });
  g.opMulti('ReorderOutput', [z], ['z'], { channels: C0 }, NCHWC_DOMAIN);
  return g.encode(
    [
      ['x', [K, C0, H, W]],
      ['m', [1, C, H, W]],
    ],
    [['z', [K, C0, H, W]]],
  );
}

async function main(): Promise<void> {
  const ort = await loadOrt();
  if (!ort) throw new Error('onnxruntime-node does not load on this platform');
  const options = { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' as const, logSeverityLevel: 3 as const };
  const [onBatch, onChannels] = await Promise.all([false, true].map((c) => ort.InferenceSession.create(blockGraph(c), options)));
  // The same rows either way: [K, C0, H, W] holds row k's channels contiguously, as [1, K*C0, H, W] does.
  const x = pattern(K * C0 * H * W, 4);
  const m = Float32Array.from(pattern(C * H * W, 5), (v) => (v > -0.05 ? 1 : 0));
  const feeds = (channels: boolean) => ({
    x: new ort.Tensor('float32', x, channels ? [1, K * C0, H, W] : [K, C0, H, W]),
    m: new ort.Tensor('float32', m, [1, C, H, W]),
  });
  const run = async (s: typeof onBatch, channels: boolean) => (await s.run(feeds(channels))).z.data as Float32Array;
  const b = await detectNchwcBlock(ort);
  const onBlocked = await ort.InferenceSession.create(blockedGraph(b), options);
  const [zb, zc, zk] = [await run(onBatch, false), await run(onChannels, true), await run(onBlocked, false)];
  const off = Math.max(...[zc, zk].map((z) => zb.reduce((worst, v, i) => Math.max(worst, Math.abs(v - z[i]) / (Math.abs(v) + 1e-6)), 0)));
  if (off > 1e-4) throw new Error(`the layouts disagree (max relative difference ${off})`);
  const best = { batch: Infinity, channels: Infinity, blocked: Infinity };
  for (let i = 0; i < RUNS; i++) {
    for (const [key, s, channels] of [
      ['batch', onBatch, false],
      ['channels', onChannels, true],
      ['blocked', onBlocked, false],
    ] as const) {
      const t = performance.now();
      await run(s, channels);
      best[key] = Math.min(best[key], performance.now() - t);
    }
  }
  await Promise.all([onBatch.release(), onChannels.release(), onBlocked.release()]);
  const md =
    `One MobileNet v2 block's backward (${C0} -> ${C} -> ${C0} channels, ${H}x${W}, two ReLU6 masks), ${K} backward row${K > 1 ? 's' : ''} of one image, ` +
    `one 1-thread ONNX Runtime session, best of ${RUNS} (\`npm run bench:rows-layout\`); masks blocked in all three:\n\n` +
    `| rows on | ms | ratio |\n|---|---|---|\n` +
    `| the batch axis, blocked by ONNX Runtime itself (the engine's layout until 2026-12-07) | ${best.batch.toFixed(2)} | 1.00x |\n` +
    `| the channel axis (grouped convolutions, masks tiled) | ${best.channels.toFixed(2)} | ${(best.batch / best.channels).toFixed(2)}x |\n` +
    `| the batch axis, written blocked (block ${b}; the engine's layout now) | ${best.blocked.toFixed(2)} | ${(best.batch / best.blocked).toFixed(2)}x |\n`;
  const results = join(PROJECT_ROOT, 'bench', 'results');
  writeAtomic(
    join(results, 'rows-layout.json'),
    JSON.stringify({ date: new Date().toISOString(), rows: K, runs: RUNS, ms: best, maxRelativeDifference: off }, null, 2) + '\n',
  );
  writeAtomic(join(results, 'rows-layout.md'), md);
  console.log(md);
}

await main();
