import { readFileSync } from 'node:fs';
import { writeAtomic } from '../src/io/atomic.js';

/**
 * Replaces the generated block `<!-- NAME:begin -->` ... `<!-- NAME:end -->` of a Markdown file with
 * `md` (figures in the docs come from runs); false where the file has no such block.
 */
export function replaceDocBlock(file: string, name: string, md: string): boolean {
  const text = readFileSync(file, 'utf8');
  const block = new RegExp(`<!-- ${name}:begin -->[\\s\\S]*?<!-- ${name}:end -->`);
  if (!block.test(text)) return false;
  writeAtomic(
    file,
    text.replace(block, () => `<!-- ${name}:begin -->\n${md.trimEnd()}\n<!-- ${name}:end -->`),
  );
  return true;
}
