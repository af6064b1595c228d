import { join } from 'node:path';
import { writeAtomic } from '../src/io/atomic.js';
import { PROJECT_ROOT } from '../src/paths.js';
import { cliReference, optionsTable } from '../src/cli/reference.js';
import { replaceDocBlock } from '../bench/docBlock.js';

/** `npm run docs:cli`: writes docs/cli-reference.md from the commands' own flag definitions, and docs/cli.md's option table from their schema. */
const file = join(PROJECT_ROOT, 'docs', 'cli-reference.md');
writeAtomic(file, cliReference());
process.stdout.write(`wrote ${file}\n`);
const guide = join(PROJECT_ROOT, 'docs', 'cli.md');
if (!replaceDocBlock(guide, 'attack-options', optionsTable())) throw new Error(`${guide}: no attack-options block`);
process.stdout.write(`wrote the option table of ${guide}\n`);
