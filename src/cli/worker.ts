import { Command } from 'commander';
import { count, ASSETS_HELP, BACKEND_HELP } from './flags.js';
import { consoleLog, startBackend } from './console.js';
import { runWorker } from '../scale/worker.js';
import { queueConnection } from '../scale/connection.js';
import { queueKey } from '../scale/signing.js';

const KEY_HELP =
  "file holding the queue's shared key (openssl rand -hex 32 > queue.key): jobs and results are signed with it (default: $UAP_QUEUE_KEY)";
import { UsageError } from '../errors.js';

/** --queue with its UAP_QUEUE default, for the commands that can run on workers. */
export function addQueueFlags(cmd: Command): Command {
  return cmd
    .option(
      '--queue <url>',
      'score on uap workers through this Redis (BullMQ): redis://[:password@]host:port or rediss:// (default: $UAP_QUEUE; none: here)',
      process.env.UAP_QUEUE || undefined,
    )
    .option('--queue-key <file>', KEY_HELP)
    .option('--shard-size <n>', 'images per queued shard (rounded up to whole batches)', count('shard-size', 1, 65_536), 512);
}

/** The library's queue option from --queue / --shard-size (checked here, so a bad URL fails before any work). */
export function queueOption(f: Record<string, unknown>): { url: string; key: string; shardSize: number } | undefined {
  if (!f.queue) return undefined;
  queueConnection(f.queue as string);
  return { url: f.queue as string, key: queueKey(f.queueKey as string | undefined), shardSize: f.shardSize as number };
}

export function workerCommand(): Command {
  return new Command('worker')
    .description('take shards of scoring work from a queue (BullMQ on Redis) until stopped; uap evaluate --queue URL hands them out')
    .option(
      '--queue <url>',
      'the Redis the coordinators use: redis://[:password@]host:port[/db] or rediss:// (default: $UAP_QUEUE)',
      process.env.UAP_QUEUE || undefined,
    )
    .option('--queue-key <file>', KEY_HELP)
    .option(
      '--model <spec...>',
      'models this worker may run besides the bundled ones (cards, model folders or files); a job finds one by its files, never by a path',
    )
    .option('--root <dir...>', "folders of images this worker may read, besides the embedded ones, the assets folder and uap's cache")
    .option('--assets <dir>', ASSETS_HELP)
    .option('--backend <name>', BACKEND_HELP)
    .option(
      '--lock-seconds <n>',
      'a shard of a worker that stops answering goes to another after this long',
      count('lock-seconds', 1, 86_400),
      30,
    )
    .action(
      async (flags: {
        queue?: string;
        queueKey?: string;
        model?: string[];
        root?: string[];
        assets?: string;
        backend?: string;
        lockSeconds: number;
      }) => {
        if (!flags.queue) throw new UsageError('{queue}: give the Redis URL (or set UAP_QUEUE)');
        queueConnection(flags.queue);
        const key = queueKey(flags.queueKey);
        const backend = await startBackend(flags.backend);
        const stop = new AbortController();
        for (const sig of ['SIGINT', 'SIGTERM'] as const)
          process.once(sig, () => {
            consoleLog.info('worker: stopping after the shard under way');
            stop.abort();
          });
        await runWorker({
          url: flags.queue,
          key,
          backend,
          models: flags.model,
          roots: flags.root,
          assets: flags.assets,
          lockMs: flags.lockSeconds * 1000,
          log: consoleLog,
          signal: stop.signal,
        });
        process.exit(0);
      },
    );
}
