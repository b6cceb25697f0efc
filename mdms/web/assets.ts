/**
 * The browser assets (one script, one stylesheet — uPlot included, no CDN), bundled with esbuild in memory
 * when the first app starts and served under content-hashed names with long-lived caching.
 * @module
 */
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

/** A bundled asset. */
export interface Asset {
  path: string;
  type: string;
  body: Buffer;
  etag: string;
}

const here = dirname(fileURLToPath(import.meta.url));
let bundled: Promise<Asset[]> | undefined;

async function bundle(entry: string, name: string, ext: 'js' | 'css'): Promise<Asset> {
  const out = await build({
    entryPoints: [join(here, 'client', entry)],
    bundle: true,
    minify: true,
    write: false,
    format: ext === 'js' ? 'iife' : undefined,
    target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
    outfile: `${name}.${ext}`,
    logLevel: 'silent',
    legalComments: 'none',
  });
  const file = out.outputFiles.find((f) => f.path.endsWith(`.${ext}`));
  if (!file) throw new Error(`esbuild produced no ${ext} for ${entry}`);
  const body = Buffer.from(file.contents);
  const hash = createHash('sha256').update(body).digest('hex').slice(0, 12);
  return {
    path: `/assets/${name}.${hash}.${ext}`,
    type: ext === 'js' ? 'text/javascript; charset=utf-8' : 'text/css; charset=utf-8',
    body,
    etag: `"${hash}"`,
  };
}

/**
 * The app's assets (bundled once per process).
 * @example
 * ```ts
 * const [js, css] = await assets();
 * ```
 */
export function assets(): Promise<Asset[]> {
  bundled ??= Promise.all([bundle('main.ts', 'app', 'js'), bundle('style.css', 'app', 'css')]).catch((e: unknown) => {
    bundled = undefined;
    throw e;
  });
  return bundled;
}
