/**
 * Every folder README lists what is in its folder (issue: "every README's file table lists what is there"):
 * each tracked file is named in the README of its nearest folder that has one (by its path or name, or by a
 * sub-folder entry such as `screenshots/`), and the root README's layout names every top-level folder.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const tracked = execFileSync('git', ['ls-files'], { cwd: ROOT, encoding: 'utf8' }).split('\n').filter(Boolean);
const readmes = tracked.filter((f) => posix.basename(f) === 'README.md' && f !== 'README.md').map((f) => posix.dirname(f));

/** The folder whose README covers `file`: its nearest ancestor with a README (not the root). */
function ownerOf(file: string): string | undefined {
  for (let d = posix.dirname(file); d !== '.'; d = posix.dirname(d)) if (readmes.includes(d)) return d;
  return undefined;
}

/** Names under which a README may mention `rel` (a path relative to the README's folder). */
function mentions(rel: string): string[] {
  const names = [rel, posix.basename(rel)];
  for (let d = posix.dirname(rel); d !== '.'; d = posix.dirname(d)) names.push(`${d}/`);
  return names;
}

describe('README file tables', () => {
  it('each folder README names every file of its folder', () => {
    const missing: string[] = [];
    for (const file of tracked) {
      const owner = ownerOf(file);
      if (!owner || posix.basename(file) === 'README.md') continue;
      const text = readFileSync(join(ROOT, owner, 'README.md'), 'utf8');
      const rel = posix.relative(owner, file);
      if (!mentions(rel).some((n) => text.includes(n))) missing.push(`${owner}/README.md does not list ${rel}`);
    }
    expect(missing).toEqual([]);
  });

  it("the root README's layout names every top-level folder", () => {
    const text = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const top = [...new Set(tracked.filter((f) => f.includes('/') && !f.startsWith('.')).map((f) => f.split('/')[0]!))];
    expect(top.filter((d) => !new RegExp(`(^|\\s|\`)${d}/`, 'm').test(text))).toEqual([]);
  });
});
