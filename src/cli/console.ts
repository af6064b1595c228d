import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { initBackend, backendNotice, type Backend } from '../engine/backend.js';
import type { Log } from '../log.js';
import { printable, withFlags } from '../errors.js';
import type { Progress, PassRecord } from '../attacks/universal.js';

/** Messages go to stderr so that stdout stays clean for results. */
export const consoleLog: Log = {
  info: (m) => process.stderr.write(`${printable(withFlags(m))}\n`),
  warn: (m) => process.stderr.write(`warning: ${printable(withFlags(m))}\n`),
  templates: true,
};

import { pct } from '../report/format.js';

export { pct };

/** `--json` on a command that writes a JSON file of its figures: print that file instead of the text. */
export function addJsonFlag<C extends Command>(cmd: C, file: string): C {
  cmd.option('--json', `print the figures as JSON (the ${file} it writes) instead of text`);
  return cmd;
}

/** With --json, the JSON file's contents on stdout; else the text. */
export function printResult(flags: Record<string, unknown>, jsonFile: string, text: () => string): void {
  process.stdout.write(flags.json ? readFileSync(jsonFile, 'utf8').trim() + '\n' : text());
}

/** Chooses where models run (--backend), says which, and returns the engine the command's job loads models with. */
export async function startBackend(flag: unknown): Promise<Backend> {
  const name = flag as string | undefined;
  const backend = await initBackend(name);
  consoleLog.info(`backend: ${backend.name}`);
  const notice = await backendNotice(backend, name);
  if (notice) consoleLog.info(notice);
  return backend;
}

/**
 * A progress bar on a terminal; piped (a log file, CI), a plain line every 10 s and at the end, without
 * the bar's glyphs ("pass 1/3: 42%, 84/200 images, ETA 3s, ...").
 */
export function progressBar(format: string): cliProgress.SingleBar {
  const tty = Boolean(process.stderr.isTTY);
  return new cliProgress.SingleBar(
    {
      format: tty ? format : plainProgressFormat(format),
      stream: process.stderr,
      hideCursor: tty,
      etaBuffer: 20,
      noTTYOutput: !tty,
      notTTYSchedule: 10000,
      // Piped, every line already ends with a newline: no empty line at the end.
      clearOnComplete: !tty,
    },
    cliProgress.Presets.shades_classic,
  );
}

/** A bar's format as a plain log line: the bar becomes a percentage, the separators commas. */
export function plainProgressFormat(format: string): string {
  return format.replace(/ \|\{bar\}\| /, ': {percentage}%, ').replace(/ \| /g, ', ');
}

/**
 * A live progress bar for Algorithm 1: images of the current pass, ETA, fooling rate on X after the
 * last pass, and the share of images found already fooled in this pass.
 */
export function universalProgress(): { onProgress: (p: Progress) => void; onPass: (r: PassRecord) => void; stop: () => void } {
  const bar = progressBar(
    'pass {pass}/{maxPasses} |{bar}| {value}/{total} images | ETA {eta_formatted} | fooled in pass {share} | FR(X) {fr} | ||v||inf {ninf}',
  );
  let started = false;
  let pass = 0;
  return {
    onProgress(p) {
      const payload = {
        pass: p.pass,
        maxPasses: p.maxPasses,
        fr: pct(p.foolingRate, '  -  '),
        share: pct(p.passFooledShare),
        ninf: p.normInf.toFixed(2),
      };
      if (!started || p.pass !== pass) {
        if (started) bar.stop();
        bar.start(p.total, p.done, payload);
        started = true;
        pass = p.pass;
      } else bar.update(p.done, payload);
    },
    onPass(r) {
      if (started) bar.stop();
      started = false;
      process.stderr.write(
        `pass ${r.pass}: fooling rate on X ${pct(r.foolingRate)}${r.valFoolingRate !== undefined ? `, on validation ${pct(r.valFoolingRate)}` : ''}, ||v||_2 ${r.normL2.toFixed(1)}, ||v||_inf ${r.normInf.toFixed(2)}, ${r.updates} updates, ${r.seconds.toFixed(1)} s\n`,
      );
    },
    stop() {
      if (started) bar.stop();
      started = false; // a later run (audit, reproduce) starts a fresh bar, whatever its pass number
    },
  };
}

/**
 * A progress bar for scoring a set (images done of listed, ETA): it appears once scoring has taken
 * two seconds, whatever the set's size (1300 images on a large model take minutes; 10,000 on the
 * embedded one, a second).
 */
export function scoringProgress(what: string): { onScore: (done: number, total: number) => void; stop: () => void } {
  const bar = progressBar(`${what} |{bar}| {value}/{total} images | {speed} images/s | ETA {eta_formatted}`);
  let first = 0;
  let started = 0;
  return {
    onScore(done, total) {
      if (!started) {
        first ||= Date.now();
        if (Date.now() - first < 2000 || done >= total) return;
        started = first;
        bar.start(total, done, { speed: '-' });
      }
      bar.update(done, { speed: (done / Math.max(1e-3, (Date.now() - started) / 1000)).toFixed(0) });
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

/** A live progress bar for fine-tuning: images of the current epoch, ETA and the running loss. */
export function trainingProgress(): {
  onBatch: (p: { round: number; epoch: number; epochs: number; done: number; total: number; loss: number }) => void;
  stop: () => void;
} {
  const bar = progressBar('round {round} epoch {epoch}/{epochs} |{bar}| {value}/{total} images | ETA {eta_formatted} | loss {loss}');
  let key = '';
  return {
    onBatch(p) {
      const payload = { round: p.round, epoch: p.epoch, epochs: p.epochs, loss: p.loss.toFixed(3) };
      const k = `${p.round}/${p.epoch}`;
      if (k !== key) {
        if (key) bar.stop();
        bar.start(p.total, p.done, payload);
        key = k;
      } else bar.update(p.done, payload);
      if (p.done === p.total) {
        bar.stop();
        key = '';
      }
    },
    stop() {
      if (key) bar.stop();
    },
  };
}

/** Runs `job` with Ctrl-C wired to an abort signal (the job stops at its next safe point and says how to resume). */
export async function withInterrupt<T>(message: string, job: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const abort = new AbortController();
  const onSigint = () => {
    consoleLog.warn(message);
    abort.abort();
  };
  process.once('SIGINT', onSigint);
  try {
    return await job(abort.signal);
  } finally {
    process.off('SIGINT', onSigint);
  }
}
