import { join } from 'node:path';
import { writeAtomic } from '../src/io/atomic.js';
import { PROJECT_ROOT } from '../src/paths.js';
import { cliReference } from '../src/cli/reference.js';

/** `npm run docs:cli`: writes docs/cli-reference.md from the commands' own flag definitions. */
const file = join(PROJECT_ROOT, 'docs', 'cli-reference.md');
writeAtomic(file, cliReference());
process.stdout.write(`wrote ${file}\n`);
