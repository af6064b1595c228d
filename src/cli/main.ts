#!/usr/bin/env node
import { CommanderError } from 'commander';
import { UsageError, AbortedError, printable, withFlags } from '../errors.js';
import { osError } from '../io/atomic.js';
import { program } from './program.js';

/**
 * The `uap` command line. Bad input (flags, files, cards) ends with a one-line message and exit
 * code 2; a stack trace is printed only for real bugs, or with UAP_DEBUG=1.
 */
function fail(message: string, code: number): never {
  process.stderr.write(`uap: error: ${printable(message)}\n`);
  process.exit(code);
}

/**
 * A reader that goes away (`uap compute | head`) must not end the run: its results are the files it
 * writes. Writes to a closed pipe fail with EPIPE, and every later one on the destroyed stream; both
 * are dropped (the run goes on and releases its folder's lock as usual).
 */
function survivePipeReaders(): void {
  for (const s of [process.stdout, process.stderr])
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE' && e.code !== 'ERR_STREAM_DESTROYED') throw e;
    });
}

async function main(): Promise<void> {
  survivePipeReaders();
  try {
    // `uap -v` alone is the version, as users expect (after a command, -v is the old --perturbation).
    const argv = process.argv.length === 3 && process.argv[2] === '-v' ? [...process.argv.slice(0, 2), '--version'] : process.argv;
    await program().parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') process.exit(0);
      process.exit(e.exitCode === 0 ? 0 : 2); // commander already printed its one-line message
    }
    if (e instanceof AbortedError) fail(withFlags(e.template), 130);
    if (e instanceof UsageError) fail(withFlags(e.template), 2);
    // An OS error on a path the user gave (a read-only --out, a full disk): one line naming the path.
    const path = (e as NodeJS.ErrnoException).path;
    const os = path ? osError(e, path, (e as NodeJS.ErrnoException).syscall ?? 'access') : undefined;
    if (os) fail(os.message, 2);
    if (process.env.UAP_DEBUG) throw e;
    fail(`${(e as Error).message} (internal error; rerun with UAP_DEBUG=1 for the stack trace)`, 1);
  }
}

await main();
