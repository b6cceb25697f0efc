#!/usr/bin/env node
// Compiles the CLI (cli/main.ts and everything it imports from this repository) into ES modules under dist/
// (dist/smartermeter.js and one chunk per actor, loaded when its command runs), so that `smartermeter` starts
// without compiling TypeScript. npm runs this on `prepare`, i.e. on `npm install` and `npm ci` in a clone.
// npm packages stay external: they load from node_modules as they are (native addons, WebAssembly, workers).
//
// Files that the sources locate through `import.meta.url` (the Paillier pool's worker, the browser apps that
// ucs/bundle.ts and mdms/web/assets.ts bundle at start-up, index.html) stay where they are: each source file's
// `import.meta.url` is rewritten to the URL of that file, relative to dist/, so it resolves as under tsx.
//
// dist/inputs.json lists the source files compiled; bin/smartermeter.js runs dist/ only while none of them is
// newer than dist/smartermeter.js, and the sources under tsx otherwise. dist/commands.json holds each
// command's line of the root help, so that `smartermeter --help` loads no actor.
//
// Usage: node bin/build.js [--outdir dir] [--quiet]
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const posix = (p) => p.split('\\').join('/');

/**
 * Compiles the CLI into `outdir` (default dist/), replacing what was there; returns the entry's path and
 * the source files compiled.
 * @example
 * ```js
 * const { entry } = await buildCli({ outdir: '/tmp/dist' });
 * ```
 */
export async function buildCli({ outdir = join(root, 'dist') } = {}) {
  outdir = resolve(outdir);
  const tmp = join(dirname(outdir), `.${basename(outdir)}.${process.pid}.tmp`);
  rmSync(tmp, { recursive: true, force: true });
  const here = {
    name: 'import-meta-url-of-the-source',
    setup(b) {
      b.onLoad({ filter: /\.[cm]?[jt]s$/ }, (args) => {
        if (args.path.split(/[\\/]/).includes('node_modules')) return undefined;
        const text = readFileSync(args.path, 'utf8');
        if (!text.includes('import.meta.url')) return undefined;
        const url = `new URL(${JSON.stringify(posix(relative(outdir, args.path)))}, import.meta.url).href`;
        return { contents: text.replaceAll('import.meta.url', url), loader: args.path.endsWith('.ts') ? 'ts' : 'js', resolveDir: dirname(args.path) };
      });
    },
  };
  const result = await build({
    entryPoints: { smartermeter: join(root, 'cli', 'main.ts') },
    outdir: tmp,
    chunkNames: '[name]-[hash]', // beside the entry: the rewritten import.meta.url are relative to dist/ itself
    bundle: true,
    splitting: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    sourcemap: true, // *.js.map, for `node --enable-source-maps`
    sourcesContent: false,
    legalComments: 'none',
    metafile: true,
    logLevel: 'warning',
    plugins: [here],
  });
  const inputs = Object.keys(result.metafile.inputs).map((p) => posix(relative(root, resolve(p))));
  writeFileSync(join(tmp, 'inputs.json'), JSON.stringify({ inputs }) + '\n');
  // Each command's line of the root help, from the compiled CLI itself.
  const cli = await import(pathToFileURL(join(tmp, 'smartermeter.js')).href);
  writeFileSync(join(tmp, 'commands.json'), JSON.stringify(cli.summarise(await cli.buildProgram()), null, 1) + '\n');
  const old = `${tmp}.old`;
  try {
    renameSync(outdir, old);
  } catch (e) {
    if (e.code !== 'ENOENT') throw e;
  }
  mkdirSync(dirname(outdir), { recursive: true });
  renameSync(tmp, outdir);
  rmSync(old, { recursive: true, force: true });
  return { entry: join(outdir, 'smartermeter.js'), inputs };
}

const self = process.argv[1];
if (self && resolve(self) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const at = args.indexOf('--outdir');
  const t0 = performance.now();
  const { entry, inputs } = await buildCli(at >= 0 ? { outdir: args[at + 1] } : {});
  if (!args.includes('--quiet')) console.log(`built ${posix(relative(process.cwd(), entry))} from ${inputs.length} source files in ${Math.round(performance.now() - t0)} ms`);
}
