/**
 * Scale-out throughput (`npm run bench:scale`): `uap evaluate` of one perturbation over a validation
 * set, run here and through the queue with 1, 2 and 3 local `uap worker`s (Debian's redis-server on
 * loopback at a free port), with the per-shard overhead that sets the speed-up on real machines:
 * the same scoring with one worker in small and in large shards, overhead = extra time / extra shards.
 * Redis is emptied before each timed run (finished shards stay 24 h, and a rerun would take them).
 * On this 2-core machine the workers share two cores, so throughput saturates at 2; the overhead is
 * what carries over. Every queued run is checked to give the local run's figures.
 *   node dist/bench/scale.js [--model=mobilenet_v1_0.25_224] [--limit=1300] [--shard=256]
 * Writes bench/results/scale.json and scale.md.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeNpy } from '../src/io/npy.js';
import { loadClassifier } from '../src/model/load.js';
import { assetsDir } from '../src/paths.js';
import { initBackend } from '../src/backend.js';

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const MODEL = args.get('model') ?? 'mobilenet_v1_0.25_224';
const LIMIT = Number(args.get('limit') ?? 1300);
const SHARD = Number(args.get('shard') ?? 256);
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const OUT = fileURLToPath(new URL('../../bench/results/', import.meta.url));

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
    c.on('close', (code) => (code === 0 ? done({ seconds: (performance.now() - t0) / 1000, stdout, stderr }) : fail(new Error(`uap ${argv.join(' ')}: exit ${code}\n${stderr}`))));
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

const stopAll = (ws: ChildProcess[]) => Promise.all(ws.map((w) => new Promise((r) => (w.exitCode !== null ? r(0) : (w.once('exit', r), w.kill('SIGTERM'))))));

async function main(): Promise<void> {
  if (spawnSync('redis-server', ['--version']).status !== 0) throw new Error('bench:scale needs redis-server (apt-get install redis-server)');
  const port = await freePort();
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}`;
  // Finished shards stay in Redis and a rerun takes them: each timed run starts from an empty Redis.
  const flush = () => spawnSync('redis-cli', ['-p', String(port), 'flushall']);
  await new Promise((r) => setTimeout(r, 500));
  const dir = mkdtempSync(join(tmpdir(), 'uap-bench-scale-'));
  try {
    // The perturbation's values do not matter for speed: seeded signs at Linf 10 in the model's size.
    await initBackend('cpu');
    const model = await loadClassifier(MODEL, { assets: assetsDir() });
    const shape = model.inputShape;
    model.dispose();
    const v = join(dir, 'v.npy');
    writeNpy(v, { data: Float32Array.from({ length: shape[0] * shape[1] * shape[2] }, (_, i) => ((Math.sin(i * 12.9898) * 43758.5453) % 1 > 0 ? 10 : -10)), shape });
    const base = ['evaluate', '-m', MODEL, '-v', v, '--limit', String(LIMIT)];
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
        rows.push({ workers: n, shardSize: SHARD, seconds: r.seconds, imagesPerSecond: LIMIT / r.seconds, same: r.stdout === local.stdout });
        console.log(`${n} worker(s): ${r.seconds.toFixed(1)} s, same figures: ${r.stdout === local.stdout}`);
        if (n === 1) {
          // Per-shard overhead: the same images in shards of 32 (many) vs 1024 (few); v perturbed so that no result is reused.
          const runs: { shardSize: number; shards: number; seconds: number }[] = [];
          for (const size of [32, 1024]) {
            flush();
            const t = await run([...base, '--queue', url, '--shard-size', String(size)]);
            runs.push({ shardSize: size, shards: Math.ceil(LIMIT / size), seconds: t.seconds });
          }
          overhead = { perShardMs: ((runs[0].seconds - runs[1].seconds) / (runs[0].shards - runs[1].shards)) * 1000, runs };
          console.log(`per-shard overhead: ${overhead.perShardMs.toFixed(0)} ms (${runs.map((t) => `${t.shards} shards ${t.seconds.toFixed(1)} s`).join(', ')})`);
        }
      } finally {
        await stopAll(workers);
      }
    }
    const result = { model: MODEL, images: LIMIT, shardSize: SHARD, localSeconds: local.seconds, localImagesPerSecond: LIMIT / local.seconds, rows, overhead, cores: (await import('node:os')).cpus().length, date: new Date().toISOString() };
    mkdirSync(OUT, { recursive: true });
    writeFileSync(join(OUT, 'scale.json'), JSON.stringify(result, null, 2) + '\n');
    console.log(JSON.stringify(result, null, 2));
  } finally {
    redis.kill('SIGTERM');
  }
}

await main();
