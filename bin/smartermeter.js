#!/usr/bin/env node
// Entry point. Runs the compiled CLI in dist/ (built by bin/build.js on `npm install`/`npm ci`, or
// `npm run build`) while it is at least as new as every source file it was compiled from; otherwise (no dist/,
// or a source edited since) it runs the TypeScript sources under tsx, so a developer never runs stale code.
// SM_FROM_SOURCE=1 forces the sources; SM_DIST names another compiled folder (tests); SM_DEBUG=1 says which ran.
import { readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = process.env.SM_DIST ? resolve(process.env.SM_DIST) : join(root, 'dist');

/** The compiled CLI's summaries if dist/ is present and no source it was compiled from is newer; else null. */
function compiled() {
  if (process.env.SM_FROM_SOURCE) return null;
  try {
    const built = statSync(join(dist, 'smartermeter.js')).mtimeMs;
    const { inputs } = JSON.parse(readFileSync(join(dist, 'inputs.json'), 'utf8'));
    for (const f of inputs) if (statSync(join(root, f)).mtimeMs > built) return null;
    return { summaries: JSON.parse(readFileSync(join(dist, 'commands.json'), 'utf8')) };
  } catch {
    return null; // missing, partial or from another layout: the sources are the truth
  }
}

const fast = compiled();
if (process.env.SM_DEBUG) console.error(`smartermeter: running ${fast ? `the compiled CLI in ${dist}` : 'the TypeScript sources (tsx)'}`);
if (fast) {
  const { main } = await import(pathToFileURL(join(dist, 'smartermeter.js')).href);
  await main(process.argv, fast);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  const { main } = await import('../cli/main.ts');
  await main(process.argv);
}
