import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue, Worker as BullWorker, QueueEvents } from 'bullmq';
import { CLI_PATH, uapCli } from './helpers.js';
import { writeNpy } from '../src/io/npy.js';
import { EMBEDDED_DIR } from '../src/paths.js';
import { QUEUE_NAME } from '../src/scale/connection.js';
import { sealJob } from '../src/scale/signing.js';

/**
 * Scale-out on BullMQ: a Redis from Debian's redis-server on loopback (a free port), `uap worker`
 * processes, and `uap evaluate --queue` checked against the local run figure for figure.
 */
const hasRedis = spawnSync('redis-server', ['--version']).status === 0;

// The queue's shared key, for every coordinator and worker these tests start (they inherit the environment).
const KEY = 'test-key-0123456789abcdef0123456789abcdef';
process.env.UAP_QUEUE_KEY = KEY;

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => done(port));
    });
    s.on('error', fail);
  });
}

/** A redis-server of its own on a free loopback port, without persistence: restarted, it has lost its data. */
interface OwnRedis {
  url: string;
  /** Shuts it down without saving, waits `downMs`, and starts it again, empty. */
  restart(downMs?: number): Promise<void>;
  stop(): void;
}

async function ownRedis(): Promise<OwnRedis> {
  const port = await freePort();
  const start = async () => {
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
    });
    for (
      let i = 0;
      i < 100 &&
      spawnSync('redis-cli', ['-p', String(port), 'ping'])
        .stdout?.toString()
        .trim() !== 'PONG';
      i++
    )
      await new Promise((r) => setTimeout(r, 100));
    return child;
  };
  let server = await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    async restart(downMs = 0) {
      spawnSync('redis-cli', ['-p', String(port), 'shutdown', 'nosave']);
      await new Promise((r) => setTimeout(r, downMs));
      server = await start();
    },
    stop: () => void server.kill('SIGTERM'),
  };
}

/** A running `uap worker` and what it printed. */
interface Worker {
  child: ChildProcess;
  log: () => string;
}

function startWorker(url: string, args: string[] = [], cwd?: string, env: Record<string, string> = {}): Promise<Worker> {
  const child = spawn(process.execPath, [CLI_PATH, 'worker', '--queue', url, ...args], {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
  return new Promise((done, fail) => {
    const t = setInterval(() => {
      if (/worker: listening on/.test(out)) {
        clearInterval(t);
        done({ child, log: () => out });
      } else if (child.exitCode !== null) {
        clearInterval(t);
        fail(new Error(`worker exited: ${out}`));
      }
    }, 50);
  });
}

async function stop(w: Worker): Promise<void> {
  if (w.child.exitCode !== null || w.child.signalCode) return;
  const gone = new Promise((done) => w.child.once('exit', done));
  w.child.kill('SIGTERM');
  await gone;
}

/** What must match between two runs: everything but when and how they were started. */
function figures(dir: string): unknown {
  const m = JSON.parse(readFileSync(join(dir, 'metrics.json'), 'utf8')) as { provenance: Record<string, unknown> };
  const { date: _d, command: _c, ...provenance } = m.provenance;
  return { ...m, provenance };
}

describe.skipIf(!hasRedis)('scale-out: uap worker and --queue on Redis (BullMQ)', () => {
  let redis: OwnRedis;
  let url: string;
  const dir = mkdtempSync(join(tmpdir(), 'uap-scale-'));
  const vFile = join(dir, 'v.npy');
  const vFile2 = join(dir, 'v2.npy');

  beforeAll(async () => {
    redis = await ownRedis();
    url = redis.url;
    // A fixed perturbation that fools a good share of the embedded model's images (signs of a seeded pattern, Linf 60).
    const data = Float32Array.from({ length: 28 * 28 }, (_, i) => ((Math.sin(i * 12.9898) * 43758.5453) % 1 > 0 ? 60 : -60));
    writeNpy(vFile, { data, shape: [28, 28, 1] });
    writeNpy(vFile2, { data: data.map((x, i) => (i % 2 ? x : -x) / 2), shape: [28, 28, 1] });
  });

  afterAll(async () => {
    redis?.stop();
  });

  it("two workers score the shards of uap evaluate, accuracy, transfer, baseline and graph, craft the points of uap sweep-size and the members of a defence pool; figures, per-image CSV, matrix, sweeps and pool equal the local run's", async () => {
    const workers = [await startWorker(url), await startWorker(url)];
    try {
      const local = await uapCli(['evaluate', '--perturbation', vFile, '--out', join(dir, 'local')]);
      expect(local.status, local.stderr).toBe(0);
      const queued = await uapCli([
        'evaluate',
        '--perturbation',
        vFile,
        '--out',
        join(dir, 'queued'),
        '--queue',
        url,
        '--shard-size',
        '32',
      ]);
      expect(queued.status, queued.stderr).toBe(0);
      expect(queued.stdout).toBe(local.stdout);
      expect(figures(join(dir, 'queued'))).toEqual(figures(join(dir, 'local')));
      expect(readFileSync(join(dir, 'queued', 'predictions.csv'), 'utf8')).toBe(
        readFileSync(join(dir, 'local', 'predictions.csv'), 'utf8'),
      );
      // 200 images in shards of 32: 7 shards, shared by the two workers.
      const shards = workers.map((w) => (w.log().match(/^shard \S+: \d+ images/gm) ?? []).length);
      expect(shards.reduce((a, b) => a + b, 0)).toBe(7);
      // A transfer matrix: each column's cells in shards on the workers, the same matrix.
      const sources = [vFile, vFile2, '--models', 'fashion', '--limit', '150'];
      const tl = await uapCli(['transfer', ...sources, '--out', join(dir, 'tlocal')]);
      expect(tl.status, tl.stderr).toBe(0);
      const tq = await uapCli(['transfer', ...sources, '--out', join(dir, 'tqueued'), '--queue', url, '--shard-size', '64']);
      expect(tq.status, tq.stderr).toBe(0);
      expect(readFileSync(join(dir, 'tqueued', 'transfer.json'), 'utf8')).toBe(readFileSync(join(dir, 'tlocal', 'transfer.json'), 'utf8'));
      expect(tq.stdout).toBe(tl.stdout.replaceAll('tlocal', 'tqueued'));
      expect(workers.map((w) => (w.log().match(/^shard \S+: \d+ images/gm) ?? []).length).reduce((a, b) => a + b, 0)).toBe(7 + 3);
      // A size sweep: every point crafts on a worker, then all of them are scored in one pass on the workers.
      const sweep = ['sweep-size', '--sizes', '20,60', '--method', 'sgd', '--xi', '40', '--max-passes', '2', '--val-limit', '64'];
      const sl = await uapCli([...sweep, '--out', join(dir, 'slocal')]);
      expect(sl.status, sl.stderr).toBe(0);
      const sq = await uapCli([...sweep, '--out', join(dir, 'squeued'), '--queue', url]);
      expect(sq.status, sq.stderr).toBe(0);
      type Point = { seconds?: number; runs: { seconds?: number }[] };
      const points = (d: string) =>
        (JSON.parse(readFileSync(join(dir, d, 'sweep-size.json'), 'utf8')) as { points: Point[] }).points.map(
          ({ seconds: _s, runs, ...p }) => ({ ...p, runs: runs.map(({ seconds: _t, ...r }) => r) }),
        );
      expect(points('squeued')).toEqual(points('slocal'));
      expect(points('slocal').some((p) => (p as unknown as { valFoolingRate: number }).valFoolingRate > 0)).toBe(true); // not a comparison of zeros
      expect(workers.map((w) => (w.log().match(/^crafting run \S+: (20|60) images/gm) ?? []).length).reduce((a, b) => a + b, 0)).toBe(2);
      // The norm sweep against noise: every scaled v and noise draw scored in shards on the workers.
      const base = ['baseline', '--perturbation', vFile, '--factors', '0,0.5,1', '--draws', '2', '--limit', '96'];
      const bl = await uapCli([...base, '--out', join(dir, 'blocal')]);
      expect(bl.status, bl.stderr).toBe(0);
      const bq = await uapCli([...base, '--out', join(dir, 'bqueued'), '--queue', url, '--shard-size', '32']);
      expect(bq.status, bq.stderr).toBe(0);
      expect(readFileSync(join(dir, 'bqueued', 'baseline.json'), 'utf8')).toBe(readFileSync(join(dir, 'blocal', 'baseline.json'), 'utf8'));
      const al = await uapCli(['accuracy', '--json']);
      const aq = await uapCli(['accuracy', '--json', '--queue', url, '--shard-size', '64']);
      expect([al.status, aq.status]).toEqual([0, 0]);
      expect(aq.stdout).toBe(al.stdout);
      expect((JSON.parse(al.stdout) as { top1: number }).top1).toBeGreaterThan(0.8);
      const gl = await uapCli(['graph', '--perturbation', vFile, '--out', join(dir, 'glocal')]);
      const gq = await uapCli(['graph', '--perturbation', vFile, '--out', join(dir, 'gqueued'), '--queue', url]);
      expect([gl.status, gq.status]).toEqual([0, 0]);
      expect(readFileSync(join(dir, 'gqueued', 'graph.json'), 'utf8')).toBe(readFileSync(join(dir, 'glocal', 'graph.json'), 'utf8'));
      // A defence pool: its members crafted on the workers, all at once; the same members, round and figures.
      const fine = [
        'finetune',
        '--rounds',
        '1',
        '--pool-size',
        '2',
        '--epochs',
        '1',
        '--limit',
        '64',
        '--val-limit',
        '64',
        '--max-passes',
        '2',
      ];
      const fl = await uapCli([...fine, '--out', join(dir, 'flocal')]);
      expect(fl.status, fl.stderr).toBe(0);
      const fq = await uapCli([...fine, '--out', join(dir, 'fqueued'), '--queue', url]);
      expect(fq.status, fq.stderr).toBe(0);
      expect(fq.stderr).toMatch(/round 1: crafting 2 pool member\(s\) on the queue's workers/);
      for (const m of ['member-0.npy', 'member-1.npy'])
        expect(
          readFileSync(join(dir, 'fqueued', 'round-1', 'pool', m)).equals(readFileSync(join(dir, 'flocal', 'round-1', 'pool', m))),
        ).toBe(true);
      const rounds = (d: string) =>
        (
          JSON.parse(readFileSync(join(dir, d, 'defence.json'), 'utf8')) as {
            rounds: { seconds?: number; card: string; epochs: { seconds?: number }[] }[];
          }
        ).rounds.map(({ seconds: _s, card: _c, epochs, ...r }) => ({ ...r, epochs: epochs.map(({ seconds: _e, ...e }) => e) }));
      expect(rounds('fqueued')).toEqual(rounds('flocal'));
    } finally {
      await Promise.all(workers.map(stop));
    }
  }, 600_000);

  it('uap normals, uap reproduce --quick and uap audit with --queue: the same normals, transfer matrix, sweep and audit as here', async () => {
    const workers = [await startWorker(url), await startWorker(url)];
    try {
      const normals = ['normals', '--limit', '40', '--val-limit', '64', '--dims', '1,5', '--draws', '2'];
      const nl = await uapCli([...normals, '--out', join(dir, 'nlocal')]);
      const nq = await uapCli([...normals, '--out', join(dir, 'nqueued'), '--queue', url, '--shard-size', '32']);
      expect([nl.status, nq.status], nq.stderr).toEqual([0, 0]);
      expect(readFileSync(join(dir, 'nqueued', 'normals.json'), 'utf8')).toBe(readFileSync(join(dir, 'nlocal', 'normals.json'), 'utf8'));
      const reproduce = ['reproduce', '--models', 'fashion', '--quick', '--max-passes', '2'];
      const rl = await uapCli([...reproduce, '--out', join(dir, 'rlocal')]);
      const rq = await uapCli([...reproduce, '--out', join(dir, 'rqueued'), '--queue', url]);
      expect([rl.status, rq.status], rq.stderr).toEqual([0, 0]);
      expect(readFileSync(join(dir, 'rqueued', 'transfer', 'transfer.json'), 'utf8').replaceAll('rqueued', 'rlocal')).toBe(
        readFileSync(join(dir, 'rlocal', 'transfer', 'transfer.json'), 'utf8'),
      );
      for (const run of ['fashion-linf', 'fashion-l2'])
        expect(
          readFileSync(join(dir, 'rqueued', run, 'perturbation.npy')).equals(readFileSync(join(dir, 'rlocal', run, 'perturbation.npy'))),
        ).toBe(true);
      type SizePoint = { seconds?: number; runs: { seconds?: number }[] };
      const points = (d: string) =>
        (JSON.parse(readFileSync(join(dir, d, 'sweep-size', 'sweep-size.json'), 'utf8')) as { points: SizePoint[] }).points.map(
          ({ seconds: _s, runs, ...p }) => ({ ...p, runs: runs.map(({ seconds: _t, ...r }) => r) }),
        );
      expect(points('rqueued')).toEqual(points('rlocal'));
      expect(readFileSync(join(dir, 'rqueued', 'normals', 'normals.json'), 'utf8')).toBe(
        readFileSync(join(dir, 'rlocal', 'normals', 'normals.json'), 'utf8'),
      );
      expect(workers.some((w) => /^crafting run /m.test(w.log()))).toBe(true);
      // uap audit with --queue: SGD-UAP's gradient shards and the scoring on the workers, the same audit.
      const audit = ['audit', '--norms', 'inf:40', '--methods', 'sgd-adam', '--max-passes', '2', '--limit', '64', '--val-limit', '64'];
      const al = await uapCli([...audit, '--out', join(dir, 'alocal')]);
      const aq = await uapCli([...audit, '--out', join(dir, 'aqueued'), '--queue', url, '--shard-size', '32']);
      expect([al.status, aq.status], aq.stderr).toEqual([0, 0]);
      const runs = (d: string) =>
        (JSON.parse(readFileSync(join(dir, d, 'audit.json'), 'utf8')) as { budgets: { runs: { craftSeconds?: number }[] }[] }).budgets.map(
          (b) => b.runs.map(({ craftSeconds: _s, ...r }) => r),
        );
      expect(runs('aqueued')).toEqual(runs('alocal'));
    } finally {
      await Promise.all(workers.map(stop));
    }
  }, 600_000);

  it("SGD-UAP data-parallel: each step's gradient shards on the workers give the local run's v bit for bit; a coordinator killed mid-run resumes", async () => {
    const workers = [await startWorker(url), await startWorker(url)];
    try {
      const args = [
        'compute',
        '--method',
        'sgd',
        '--xi',
        '40',
        '--max-passes',
        '3',
        '--limit',
        '96',
        '--val-limit',
        '64',
        '--grad-shard',
        '8',
        '--force',
      ];
      const local = await uapCli([...args, '--out', join(dir, 'sgd-local')]);
      expect(local.status, local.stderr).toBe(0);
      const queued = await uapCli([...args, '--out', join(dir, 'sgd-queued'), '--queue', url]);
      expect(queued.status, queued.stderr).toBe(0);
      expect(
        readFileSync(join(dir, 'sgd-queued', 'perturbation.npy')).equals(readFileSync(join(dir, 'sgd-local', 'perturbation.npy'))),
      ).toBe(true);
      // 96 images in minibatches of 32, shards of 8: 4 shards a step, 3 steps a pass, 3 passes.
      expect(workers.map((w) => (w.log().match(/^gradient shard \S+: 8 images/gm) ?? []).length).reduce((a, b) => a + b, 0)).toBe(36);
      // The coordinator killed after its first pass (its checkpoint written), then resumed: the same v.
      const out = join(dir, 'sgd-killed');
      const child = spawn(process.execPath, [CLI_PATH, ...args, '--out', out, '--queue', url], { stdio: ['ignore', 'ignore', 'pipe'] });
      let said = '';
      child.stderr!.setEncoding('utf8').on('data', (d: string) => (said += d));
      await new Promise<void>((done) => {
        const t = setInterval(() => {
          if (/^pass 1: /m.test(said) || child.exitCode !== null) {
            clearInterval(t);
            child.kill('SIGKILL');
            done();
          }
        }, 5);
      });
      const resumed = await uapCli([...args.filter((a) => a !== '--force'), '--out', out, '--queue', url, '--resume']);
      expect(resumed.status, resumed.stderr).toBe(0);
      expect(resumed.stderr).toMatch(/resuming from pass [12]/);
      expect(readFileSync(join(out, 'perturbation.npy')).equals(readFileSync(join(dir, 'sgd-local', 'perturbation.npy')))).toBe(true);
    } finally {
      await Promise.all(workers.map(stop));
    }
  }, 600_000);

  it('a worker killed with kill -9 mid-shard loses nothing: the shard goes to another worker and the figures stay the same', async () => {
    const queue = new Queue(QUEUE_NAME, { connection: { url } });
    const first = await startWorker(url, ['--lock-seconds', '1']);
    let second: Worker | undefined;
    try {
      // One shard of all 200 images, so that it is under way (model loading, then scoring) when the worker dies.
      const run = uapCli(['evaluate', '--perturbation', vFile, '--out', join(dir, 'killed'), '--queue', url, '--shard-size', '256']);
      let active = 0;
      for (let i = 0; i < 2000 && active === 0; i++) {
        active = await queue.getActiveCount();
        if (!active) await new Promise((r) => setTimeout(r, 5));
      }
      expect(active).toBe(1);
      first.child.kill('SIGKILL');
      second = await startWorker(url, ['--lock-seconds', '1']);
      const res = await run;
      expect(res.status, res.stderr).toBe(0);
      expect(first.log()).not.toMatch(/^shard \S+: \d+ images/m); // it never finished its shard
      expect(second.log()).toMatch(/^shard \S+: 200 images/m);
      await uapCli(['evaluate', '--perturbation', vFile, '--out', join(dir, 'local1')]);
      expect(figures(join(dir, 'killed'))).toEqual(figures(join(dir, 'local1')));
    } finally {
      await queue.close();
      if (second) await stop(second);
    }
  }, 600_000);

  it('a worker runs only the models its operator allows, found by their files: another model, or one whose files differ, is refused (one line, exit 2)', async () => {
    // The same relative model path on two "machines" (working folders); the worker's weights differ by one byte.
    const here = mkdtempSync(join(tmpdir(), 'uap-coord-'));
    const there = mkdtempSync(join(tmpdir(), 'uap-worker-'));
    const same = mkdtempSync(join(tmpdir(), 'uap-worker-'));
    for (const d of [here, there, same]) cpSync(join(EMBEDDED_DIR, 'model'), join(d, 'm'), { recursive: true });
    const weights = join(there, 'm', 'weights.bin');
    const bytes = readFileSync(weights);
    bytes[100] ^= 1;
    writeFileSync(weights, bytes);
    const args = ['evaluate', '-m', 'm', '--perturbation', vFile, '--queue', url];
    const notAllowed =
      /^uap: error: queue: shard 1 of 1 \(images 1-200\) failed on a worker: worker refused the shard: model m: not among this worker's models/;
    // No --model: only the bundled models; a path in the job is never opened.
    let w = await startWorker(url, [], there);
    try {
      const outside = await uapCli(args, { cwd: here });
      expect(outside.status).toBe(2);
      expect(outside.stderr.trim().split('\n').pop()).toMatch(notAllowed);
    } finally {
      await stop(w);
    }
    w = await startWorker(url, ['--model', 'm'], there);
    try {
      const differs = await uapCli(args, { cwd: here });
      expect(differs.status).toBe(2);
      expect(differs.stderr.trim().split('\n').pop()).toMatch(notAllowed);
    } finally {
      await stop(w);
    }
    // The same files under another folder and name on the worker: found, and the same figures.
    w = await startWorker(url, ['--model', join(same, 'm')], tmpdir());
    try {
      const ok = await uapCli(args, { cwd: here });
      expect(ok.status, ok.stderr).toBe(0);
      expect(ok.stdout).toBe((await uapCli(['evaluate', '-m', 'm', '--perturbation', vFile], { cwd: here })).stdout);
    } finally {
      await stop(w);
    }
  }, 600_000);

  it("a defence's later rounds on the workers: a --model folder allows the fine-tuned models its runs write under it", async () => {
    const runs = mkdtempSync(join(tmpdir(), 'uap-runs-'));
    const w = await startWorker(url, ['--model', runs]);
    try {
      const fine = [
        'finetune',
        '--rounds',
        '2',
        '--pool-size',
        '1',
        '--epochs',
        '1',
        '--limit',
        '32',
        '--val-limit',
        '32',
        '--max-passes',
        '1',
      ];
      const fq = await uapCli([...fine, '--out', join(runs, 'defence'), '--queue', url]);
      expect(fq.status, fq.stderr).toBe(0);
      expect(fq.stderr).toMatch(/round 2: crafting 1 pool member\(s\) on the queue's workers/);
      expect(w.log().match(/^crafting run \S+: 32 images of /gm)).toHaveLength(2);
    } finally {
      await stop(w);
    }
  }, 600_000);

  it('a rogue worker without the key cannot forge a result: the coordinator refuses it (one line, exit 2), and a rerun with honest workers gives the true figures', async () => {
    const connection = { url };
    // A 20-line impostor on the same queue: it answers every job with a 100% fooling rate.
    const rogue = new BullWorker(QUEUE_NAME, async () => ({ body: JSON.stringify({ forged: true }), mac: '0'.repeat(64) }), { connection });
    const args = ['evaluate', '--perturbation', vFile, '--limit', '64', '--queue', url];
    try {
      await rogue.waitUntilReady();
      const forged = await uapCli(args);
      expect(forged.status).toBe(2);
      expect(forged.stderr.trim().split('\n').pop()).toMatch(
        /^uap: error: queue: the result of shard 1 of 1 \(images 1-64\) does not carry a signature of this queue's key/,
      );
    } finally {
      await rogue.close();
    }
    const w = await startWorker(url);
    try {
      const honest = await uapCli(args);
      expect(honest.status, honest.stderr).toBe(0);
      expect(honest.stdout).toBe((await uapCli(['evaluate', '--perturbation', vFile, '--limit', '64'])).stdout);
    } finally {
      await stop(w);
    }
  }, 600_000);

  it('forged jobs: unsigned, or signed with file-naming card fields, paths outside the folders or sizes beyond bounds, are refused without reading anything; refusals carry no file contents, paths of the worker or stacks', async () => {
    const connection = { url };
    const queue = new Queue(QUEUE_NAME, { connection });
    const events = new QueueEvents(QUEUE_NAME, { connection });
    const secret = mkdtempSync(join(tmpdir(), 'uap-secret-'));
    writeFileSync(join(secret, 'card.json'), 'root:*:20202:0:99999:7:::\n');
    const w = await startWorker(url);
    const shard = (o: Record<string, unknown> = {}) => ({
      protocol: 2,
      uap: '0',
      model: { spec: 'fashion' },
      modelPrint: '0'.repeat(64),
      data: null,
      role: 'val',
      items: [{ path: 'a.png', label: 0 }],
      dataPrint: '0'.repeat(64),
      vs: [],
      radii: [],
      draws: 0,
      batchSize: 32,
      strict: false,
      ...o,
    });
    const refusal = async (id: string, data: unknown): Promise<{ reason: string; stack: string[] }> => {
      const job = await queue.add('score', data, { jobId: id, attempts: 1 });
      await job.waitUntilFinished(events).then(
        () => expect.unreachable('a forged job ran'),
        () => {},
      );
      const failed = (await queue.getJob(id))!;
      return { reason: failed.failedReason, stack: failed.stacktrace ?? [] };
    };
    try {
      await events.waitUntilReady();
      const unsigned = await refusal('forged-1', shard({ model: { spec: 'fashion', card: { model: join(secret, 'card.json') } } }));
      expect(unsigned.reason).toBe(
        "worker refused the shard: the job is not signed with this worker's queue key (do its coordinator and this worker share UAP_QUEUE_KEY?)",
      );
      const wrongKey = await refusal('forged-2', sealJob('another-key-0123456789abcdef0123456789', 'score', shard()));
      expect(wrongKey.reason).toMatch(/not signed with this worker's queue key/);
      const signed = (id: string, o: Record<string, unknown>) => refusal(id, sealJob(KEY, 'score', shard(o)));
      const card = await signed('forged-3', { model: { spec: 'fashion', card: { model: join(secret, 'card.json'), format: 'layers' } } });
      expect(card.reason).toBe(
        'worker refused the shard: job field model.card.model: expected none (a job may set only inputShape, numClasses, preprocess, logitsLayer, outputIsProbabilities, outputMap, labelSpace)',
      );
      const path = await signed('forged-4', { model: { spec: join(secret, 'card.json') } });
      expect(path.reason).toMatch(/^worker refused the shard: model card\.json: not among this worker's models/);
      const draws = await signed('forged-5', { draws: 100000 });
      expect(draws.reason).toBe('worker refused the shard: job field draws: expected an integer in [0, 1000]');
      const member = await signed('forged-6', { items: [{ path: 'a.tar', member: { name: 'x.png', offset: 0, size: 4e9 } }] });
      expect(member.reason).toMatch(/^worker refused the shard: job field items\[0\]\.member\.size: expected an integer in \[0, \d+\]$/);
      const dataOut = await signed('forged-7', { data: secret });
      expect(dataOut.reason).toBe(
        'worker refused the shard: data .../' +
          secret.split('/').pop() +
          ': not among the files this worker may read (its operator adds folders with uap worker --root)',
      );
      for (const r of [unsigned, wrongKey, card, path, draws, member, dataOut]) {
        expect(r.reason).not.toMatch(/root:\*|20202/);
        expect(r.reason).not.toContain(secret);
        expect(r.stack).toEqual([]);
      }
      expect(w.child.exitCode).toBeNull();
    } finally {
      await stop(w);
      await events.close();
      await queue.close();
    }
  }, 600_000);

  it.skipIf(spawnSync('openssl', ['version']).status !== 0)(
    'TLS and a password (rediss://:pass@): the same figures; an untrusted certificate or a wrong password is one line, exit 2, the password never printed',
    async () => {
      // A throwaway CA and server certificate for 127.0.0.1; the clients trust the CA through NODE_EXTRA_CA_CERTS.
      const tls = mkdtempSync(join(tmpdir(), 'uap-tls-'));
      const ssl = (...a: string[]) => expect(spawnSync('openssl', a, { cwd: tls }).status).toBe(0);
      ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=uap-test-ca');
      ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
      writeFileSync(join(tls, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
      ssl(
        'x509',
        '-req',
        '-in',
        'server.csr',
        '-CA',
        'ca.crt',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-out',
        'server.crt',
        '-days',
        '1',
        '-extfile',
        'ext.cnf',
      );
      const port = await freePort();
      const server = spawn(
        'redis-server',
        [
          '--port',
          '0',
          '--tls-port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--tls-cert-file',
          'server.crt',
          '--tls-key-file',
          'server.key',
          '--tls-ca-cert-file',
          'ca.crt',
          '--tls-auth-clients',
          'no',
          '--requirepass',
          'Pw-4242',
          '--save',
          '',
          '--appendonly',
          'no',
        ],
        { cwd: tls, stdio: 'ignore' },
      );
      const secure = `rediss://:Pw-4242@127.0.0.1:${port}`;
      const trust = { NODE_EXTRA_CA_CERTS: join(tls, 'ca.crt') };
      let w: Worker | undefined;
      try {
        await new Promise((r) => setTimeout(r, 500));
        w = await startWorker(secure, [], undefined, trust);
        expect(w.log()).toContain(`listening on rediss://:***@127.0.0.1:${port}`);
        const local = await uapCli(['evaluate', '--perturbation', vFile, '--limit', '64']);
        const queued = await uapCli(['evaluate', '--perturbation', vFile, '--limit', '64', '--queue', secure], { env: trust });
        expect(queued.status, queued.stderr).toBe(0);
        expect(queued.stdout).toBe(local.stdout);
        const untrusted = await uapCli(['evaluate', '--perturbation', vFile, '--limit', '64', '--queue', secure]);
        expect(untrusted.status).toBe(2);
        expect(untrusted.stderr.trim().split('\n').pop()).toBe(
          `uap: error: --queue rediss://:***@127.0.0.1:${port}: cannot connect (self-signed certificate in certificate chain)`,
        );
        const wrong = await uapCli(['evaluate', '--perturbation', vFile, '--limit', '64', '--queue', secure.replace('Pw-4242', 'nope')], {
          env: trust,
        });
        expect(wrong.status).toBe(2);
        expect(wrong.stderr.trim().split('\n').pop()).toMatch(
          /^uap: error: --queue rediss:\/\/:\*\*\*@127\.0\.0\.1:\d+: cannot connect \(WRONGPASS/,
        );
        for (const r of [queued, untrusted, wrong]) expect(r.stderr).not.toMatch(/Pw-4242|nope/);
      } finally {
        if (w) await stop(w);
        server.kill('SIGTERM');
      }
    },
    600_000,
  );

  it('Redis restarted without its data mid-run: the coordinator says so in one line (exit 2); the worker lives on and takes the next run', async () => {
    const redis = await ownRedis();
    const own = redis.url;
    const w = await startWorker(own);
    try {
      // SGD-UAP with one-image gradient shards: many small jobs, so the restart falls in the middle of the run.
      const run = uapCli([
        'compute',
        '--method',
        'sgd',
        '--xi',
        '40',
        '--max-passes',
        '50',
        '--limit',
        '200',
        '--val',
        'none',
        '--grad-shard',
        '1',
        '--out',
        join(dir, 'restart'),
        '--force',
        '--queue',
        own,
      ]);
      while (!/gradient shard/.test(w.log())) await new Promise((r) => setTimeout(r, 50));
      await redis.restart();
      const res = await run;
      expect(res.status).toBe(2);
      expect(res.stderr.trim().split('\n').pop()).toBe(
        `uap: error: queue ${own}: Redis lost the queued work (restarted without its data?); run the command again`,
      );
      const after = await uapCli(['evaluate', '--perturbation', vFile, '--limit', '64', '--queue', own]);
      expect(after.status, after.stderr).toBe(0);
      expect(w.child.exitCode).toBeNull();
    } finally {
      await stop(w);
      redis.stop();
    }
  }, 600_000);

  it('Redis restarted without its data in the middle of a shard: the worker lives on (its progress reports fail quietly) and takes the next run', async () => {
    const redis = await ownRedis();
    const own = redis.url;
    const w = await startWorker(own);
    const queue = new Queue(QUEUE_NAME, { connection: { url: own } });
    try {
      // One long shard: every image scored at 5 radii with 300 noise draws each, reporting progress per batch.
      const run = uapCli(['baseline', '--perturbation', vFile, '--draws', '300', '--shard-size', '256', '--queue', own]);
      let active = 0;
      for (let i = 0; i < 4000 && active === 0; i++) {
        active = await queue.getActiveCount().catch(() => 0);
        if (!active) await new Promise((r) => setTimeout(r, 5));
      }
      expect(active).toBe(1);
      await new Promise((r) => setTimeout(r, 500)); // progress reports under way
      await redis.restart(1000); // reports fail while Redis is gone
      const res = await run;
      expect(res.status).toBe(2);
      expect(res.stderr.trim().split('\n').pop()).toBe(
        `uap: error: queue ${own}: Redis lost the queued work (restarted without its data?); run the command again`,
      );
      const after = await uapCli(['evaluate', '--perturbation', vFile, '--limit', '64', '--queue', own]);
      expect(after.status, after.stderr).toBe(0);
      expect(w.child.exitCode).toBeNull();
      expect(w.log()).not.toMatch(/Unhandled|at .*\.js:\d+/);
    } finally {
      await queue.close();
      await stop(w);
      redis.stop();
    }
  }, 600_000);

  it('a bad queue URL or no Redis there: one line naming --queue, exit 2', async () => {
    const bad = await uapCli(['evaluate', '--perturbation', vFile, '--queue', 'http://127.0.0.1:1']);
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim()).toBe(
      'uap: error: --queue http://127.0.0.1:1: expected a redis:// or rediss:// URL (BullMQ on Redis), not http:',
    );
    const none = await uapCli(['evaluate', '--perturbation', vFile, '--queue', `redis://:secret@127.0.0.1:${await freePort()}`]);
    expect(none.status).toBe(2);
    expect(none.stderr.trim().split('\n').pop()).toMatch(/^uap: error: --queue redis:\/\/:\*\*\*@127\.0\.0\.1:\d+\/?: /);
    expect(none.stderr).not.toContain('secret');
  }, 600_000);
});

describe('what a worker stores in Redis', () => {
  it("scrubs this machine's folders from messages (names with spaces too), any absolute path's folders, and control characters", async () => {
    const { scrubbed } = await import('../src/scale/worker.js');
    expect(scrubbed('image /home/John Smith/data/x.png: a folder, expected a regular file', ['/home/John Smith/data'])).toBe(
      'image .../x.png: a folder, expected a regular file',
    );
    expect(scrubbed('bytes 0-9 lie beyond the end of /srv/shards/a.tar (5 bytes)')).toBe(
      'bytes 0-9 lie beyond the end of .../a.tar (5 bytes)',
    );
    expect(scrubbed('x [/srv/a/b.png] and <"/srv/c/d.png">')).toBe('x [.../b.png] and <".../d.png">');
    expect(scrubbed('line one\u001b[31m\nline two')).toBe('line one\\x1b[31m');
    expect(scrubbed('y'.repeat(600))).toHaveLength(500);
  });
});
