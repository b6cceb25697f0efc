/**
 * The layering rule (issue: "no actor imports another"): protocol/ and lib/ are below every actor; each actor
 * folder imports only itself, protocol/ and lib/; cli/ composes the actors; bench/ never imports a test file.
 * Checked over the source's static and dynamic relative imports, so a new shortcut fails here, naming the file.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const ACTORS = ['firmware', 'gateway', 'broker', 'pes', 'mdms', 'ucs', 'provision', 'guardian'] as const;
const BELOW = ['protocol', 'lib'] as const;

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (/\.(ts|js|mjs)$/.test(name) && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Top-level folders a file imports from (relative specifiers only; packages are not layers). */
export function importedFolders(file: string, text: string): { spec: string; folder: string }[] {
  const specs = [...text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)['"](\.{1,2}\/[^'"]+)['"]/g)].map((m) => m[1]!);
  return specs.map((spec) => ({ spec, folder: relative(ROOT, resolve(dirname(file), spec)).split(/[\\/]/)[0]! }));
}

/** Which folders `folder` may import from. */
function allowed(folder: string): (target: string) => boolean {
  if ((BELOW as readonly string[]).includes(folder)) {
    // protocol/ is the bottom; lib/ may use protocol/.
    return (t) => t === folder || (folder === 'lib' && t === 'protocol');
  }
  if ((ACTORS as readonly string[]).includes(folder)) return (t) => t === folder || (BELOW as readonly string[]).includes(t);
  if (folder === 'bench') return (t) => t !== 'test';
  return () => true; // cli/ (the composition root) and test/
}

function violations(folders: readonly string[]): string[] {
  const out: string[] = [];
  for (const folder of folders) {
    const ok = allowed(folder);
    for (const file of sources(join(ROOT, folder))) {
      for (const { spec, folder: target } of importedFolders(file, readFileSync(file, 'utf8'))) {
        if (!ok(target)) out.push(`${relative(ROOT, file)} imports ${spec} (${target}/)`);
      }
    }
  }
  return out;
}

describe('import graph', () => {
  it('no actor imports another actor or cli/; protocol/ and lib/ import no actor', () => {
    expect(violations([...ACTORS, ...BELOW])).toEqual([]);
  });

  it('bench/ imports no test file', () => {
    expect(violations(['bench'])).toEqual([]);
  });

  it('the check sees a violation when there is one', () => {
    const file = join(ROOT, 'pes', 'x.ts');
    const found = importedFolders(file, "import { startMdmsIngest } from '../mdms/ingest.js';\nconst m = await import('../ucs/link.js');");
    expect(found.map((f) => f.folder)).toEqual(['mdms', 'ucs']);
    expect(found.every((f) => allowed('pes')(f.folder))).toBe(false);
    expect(allowed('pes')('protocol') && allowed('pes')('lib') && allowed('pes')('pes')).toBe(true);
    expect(allowed('bench')('test')).toBe(false);
  });
});
