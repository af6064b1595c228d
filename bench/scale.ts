/**
 * Scale-out throughput (`npm run bench:scale`): `uap evaluate` of one perturbation over a validation
 * set, run here and through the queue with 1, 2 and 3 local `uap worker`s (Debian's redis-server on
 * loopback at a free port), with the per-shard overhead that sets the speed-up on real machines:
 * the embedded model on the 10,000 Fashion-MNIST test images (Debian's dataset-fashion-mnist) with one
 * worker in shards of 32 and of 5,000, overhead = extra time / extra shards (tiny work per image, so
 * that the overhead is what is measured); and SGD-UAP here and data-parallel on 2 workers.
 * Redis is emptied before each timed run (finished shards stay 24 h, and a rerun would take them).
 * On this 2-core machine the workers share two cores, so throughput saturates at 2; the overhead is
 * what carries over. Every queued run is checked to give the local run's figures.
 *   node dist/bench/scale.js [--model=mobilenet_v1_0.25_224] [--limit=1300] [--shard=256]
 * Writes bench/results/scale.json and scale.md.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeNpy } from '../src/io/npy.js';
import { loadClassifier } from '../src/import/load.js';
import { assetsDir } from '../src/paths.js';
import { initBackend } from '../src/engine/backend.js';

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const MODEL = args.get('model') ?? 'mobilenet_v1_0.25_224';
const LIMIT = Number(args.get('limit') ?? 1300);
const SHARD = Number(args.get('shard') ?? 256);
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const OUT = fileURLToPath(new URL('../../bench/results/', import.meta.url));
// The queue's shared key for this bench's coordinators and workers (they inherit the environment).
process.env.UAP_QUEUE_KEY ??= randomBytes(32).toString('hex');

const freePort = () =>
  new Promise<number>((done) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => done(port));
    });
  });

function run(argv: string[]): Promise<{ seconds: number; stdout: string; stderr: string }> {
  const t0 = performance.now();
  return new Promise((done, fail) => {
    const c = spawn(process.execPath, [CLI, ...argv]);
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.on('close', (code) =>
      code === 0
        ? done({ seconds: (performance.now() - t0) / 1000, stdout, stderr })
        : fail(new Error(`uap ${argv.join(' ')}: exit ${code}\n${stderr}`)),
    );
  });
}

function startWorker(url: string): Promise<ChildProcess> {
  const c = spawn(process.execPath, [CLI, 'worker', '--queue', url], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  return new Promise((done, fail) => {
    c.stderr!.on('data', (d) => {
      err += d;
      if (/worker: listening/.test(err)) done(c);
    });
    c.on('exit', (code) => fail(new Error(`worker exited ${code}: ${err}`)));
  });
}

const stopAll = (ws: ChildProcess[]) =>
  Promise.all(ws.map((w) => new Promise((r) => (w.exitCode !== null ? r(0) : (w.once('exit', r), w.kill('SIGTERM'))))));

async function main(): Promise<void> {
  if (spawnSync('redis-server', ['--version']).status !== 0)
    throw new Error('bench:scale needs redis-server (apt-get install redis-server)');
  const port = await freePort();
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  });
  const url = `redis://127.0.0.1:${port}`;
  // Finished shards stay in Redis and a rerun takes them: each timed run starts from an empty Redis.
  const flush = () => spawnSync('redis-cli', ['-p', String(port), 'flushall']);
  await new Promise((r) => setTimeout(r, 500));
  const dir = mkdtempSync(join(tmpdir(), 'uap-bench-scale-'));
  try {
    // The perturbation's values do not matter for speed: seeded signs at Linf 10 in the model's size.
    const backend = await initBackend('cpu');
    const model = await loadClassifier(MODEL, { assets: assetsDir(), backend });
    const shape = model.inputShape;
    model.dispose();
    const v = join(dir, 'v.npy');
    writeNpy(v, {
      data: Float32Array.from({ length: shape[0] * shape[1] * shape[2] }, (_, i) =>
        (Math.sin(i * 12.9898) * 43758.5453) % 1 > 0 ? 10 : -10,
      ),
      shape,
    });
    const fashionV = join(dir, 'fashion-v.npy');
    writeNpy(fashionV, { data: Float32Array.from({ length: 28 * 28 }, (_, i) => (i % 3 ? 20 : -20)), shape: [28, 28, 1] });
    const base = ['evaluate', '-m', MODEL, '--perturbation', v, '--limit', String(LIMIT)];
    const local = await run(base);
    console.log(`local: ${local.seconds.toFixed(1)} s`);
    const rows: { workers: number; shardSize: number; seconds: number; imagesPerSecond: number; same: boolean }[] = [];
    let overhead: { perShardMs: number; runs: { shardSize: number; shards: number; seconds: number }[] } | undefined;
    for (const n of [1, 2, 3]) {
      const workers = await Promise.all(Array.from({ length: n }, () => startWorker(url)));
      try {
        await run([...base, '--queue', url, '--shard-size', String(SHARD), '--limit', '1']); // each worker loads the model once
        flush();
        const r = await run([...base, '--queue', url, '--shard-size', String(SHARD)]);
        rows.push({
          workers: n,
          shardSize: SHARD,
          seconds: r.seconds,
          imagesPerSecond: LIMIT / r.seconds,
          same: r.stdout === local.stdout,
        });
        console.log(`${n} worker(s): ${r.seconds.toFixed(1)} s, same figures: ${r.stdout === local.stdout}`);
        if (n === 1) {
          // Per-shard overhead, where the work per image is tiny so that the overhead shows: the embedded
          // model on 10,000 Fashion-MNIST test images in shards of 32 (313) and of 5,000 (2), one worker.
          const runs: { shardSize: number; shards: number; seconds: number }[] = [];
          const small = ['evaluate', '--perturbation', fashionV, '--data', 'fashion:test'];
          await run([...small, '--queue', url, '--limit', '64']); // the worker loads the model once
          for (const size of [32, 5000]) {
            flush();
            const t = await run([...small, '--queue', url, '--shard-size', String(size)]);
            runs.push({ shardSize: size, shards: Math.ceil(10000 / size), seconds: t.seconds });
          }
          overhead = { perShardMs: ((runs[0].seconds - runs[1].seconds) / (runs[0].shards - runs[1].shards)) * 1000, runs };
          console.log(
            `per-shard overhead: ${overhead.perShardMs.toFixed(1)} ms (${runs.map((t) => `${t.shards} shards ${t.seconds.toFixed(1)} s`).join(', ')})`,
          );
        }
      } finally {
        await stopAll(workers);
      }
    }
    // SGD-UAP data-parallel: 2 passes over 128 images, minibatch 32, shards of 16 (2 per step), here and on 2 workers.
    const sgdArgs = [
      'compute',
      '-m',
      MODEL,
      '--method',
      'sgd',
      '--limit',
      '128',
      '--val',
      'none',
      '--max-passes',
      '2',
      '--grad-shard',
      '16',
      '--force',
    ];
    const sgdLocal = await run([...sgdArgs, '--out', join(dir, 'sgd-local')]);
    flush();
    const sgdWorkers = await Promise.all([startWorker(url), startWorker(url)]);
    let sgdQueued: { seconds: number };
    try {
      sgdQueued = await run([...sgdArgs, '--out', join(dir, 'sgd-queued'), '--queue', url]);
    } finally {
      await stopAll(sgdWorkers);
    }
    const sameV = readFileSync(join(dir, 'sgd-local', 'perturbation.npy')).equals(
      readFileSync(join(dir, 'sgd-queued', 'perturbation.npy')),
    );
    const steps = 2 * Math.ceil(128 / 32);
    const sgd = {
      images: 128,
      passes: 2,
      steps,
      gradShard: 16,
      localSeconds: sgdLocal.seconds,
      queuedSeconds: sgdQueued.seconds,
      extraPerStepMs: ((sgdQueued.seconds - sgdLocal.seconds) / steps) * 1000,
      sameV,
    };
    console.log(
      `SGD-UAP: ${steps} steps here ${sgdLocal.seconds.toFixed(1)} s, on 2 workers ${sgdQueued.seconds.toFixed(1)} s (same v: ${sameV})`,
    );
    const result = {
      model: MODEL,
      images: LIMIT,
      shardSize: SHARD,
      localSeconds: local.seconds,
      localImagesPerSecond: LIMIT / local.seconds,
      rows,
      overhead,
      sgd,
      cores: (await import('node:os')).cpus().length,
      date: new Date().toISOString(),
    };
    mkdirSync(OUT, { recursive: true });
    writeFileSync(join(OUT, 'scale.json'), JSON.stringify(result, null, 2) + '\n');
    writeFileSync(join(OUT, 'scale.md'), scaleMarkdown(result));
    console.log(JSON.stringify(result, null, 2));
  } finally {
    redis.kill('SIGTERM');
  }
}

/** The README's table of a bench:scale run. */
function scaleMarkdown(r: {
  model: string;
  images: number;
  shardSize: number;
  localSeconds: number;
  rows: { workers: number; seconds: number; imagesPerSecond: number; same: boolean }[];
  overhead?: { perShardMs: number; runs: { shardSize: number; shards: number; seconds: number }[] };
  sgd: { steps: number; gradShard: number; localSeconds: number; queuedSeconds: number; sameV: boolean };
}): string {
  const lines = [
    `| \`uap evaluate\`, ${r.model}, ${r.images} images, shards of ${r.shardSize} | seconds | images / s | same figures as here |`,
    '|---|---|---|---|',
    `| here (no queue) | ${r.localSeconds.toFixed(1)} | ${(r.images / r.localSeconds).toFixed(0)} | - |`,
    ...r.rows.map(
      (w) =>
        `| ${w.workers} worker${w.workers > 1 ? 's' : ''} | ${w.seconds.toFixed(1)} | ${w.imagesPerSecond.toFixed(0)} | ${w.same ? 'yes' : '**no**'} |`,
    ),
  ];
  const o = r.overhead;
  if (o)
    lines.push(
      '',
      `Per-shard overhead (queue round trip, job bookkeeping, checks; 1 worker, the embedded model on 10,000 images in ${o.runs.map((x) => `${x.shards} shards: ${x.seconds.toFixed(1)} s`).join(' vs ')}): **${o.perShardMs.toFixed(1)} ms**.`,
    );
  lines.push(
    '',
    `SGD-UAP, ${r.sgd.steps} steps with shards of ${r.sgd.gradShard}: ${r.sgd.localSeconds.toFixed(1)} s here, ${r.sgd.queuedSeconds.toFixed(1)} s on 2 workers (same v bit for bit: ${r.sgd.sameV ? 'yes' : '**no**'}).`,
  );
  return lines.join('\n') + '\n';
}

await main();
