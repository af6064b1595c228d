import { Command } from 'commander';
import { count, ASSETS_HELP } from './flags.js';
import { consoleLog } from './console.js';
import { isLoopback, serveStudio } from '../studio/server.js';
import { assetsDir, assetsHint } from '../paths.js';
import { existsSync } from 'node:fs';

export function studioCommand(): Command {
  return new Command('studio')
    .description('serve the studio (the browser page that computes and explores universal perturbations) on localhost')
    .option('--port <n>', 'port to listen on, 0..65535 (0: any free port)', count('port', 0), 5175)
    .option(
      '--host <addr>',
      'address to listen on (default loopback only; another address shares the models and images with the network)',
      '127.0.0.1',
    )
    .option('--assets <dir>', ASSETS_HELP)
    .action(async (flags: { port: number; host: string; assets?: string }) => {
      const { url } = await serveStudio(flags);
      if (!isLoopback(flags.host))
        consoleLog.warn(
          `serving on ${flags.host}, not loopback: anyone who can reach ${url} can use the studio and read its models and images`,
        );
      const assets = assetsDir(flags.assets);
      consoleLog.info(
        existsSync(assets)
          ? `ImageNet models and images from ${assets}`
          : `${assetsHint(assets)}: only the embedded Fashion-MNIST model (pass --assets DIR)`,
      );
      process.stdout.write(`uap studio: open ${url} (Ctrl-C stops)\n`);
      await new Promise(() => {}); // serve until interrupted
    });
}
