/**
 * Builds the browser app (ucs/web/main.ts and everything it imports, CSS included) with esbuild into
 * memory, once per process. Nothing is fetched at run time from anywhere but this server: no CDN.
 * @module
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));

/** One served file. */
export interface Asset {
  body: Buffer;
  type: string;
  /** Strong ETag (SHA-256 prefix of the body). */
  etag: string;
}

export interface AppBundle {
  '/app.js': Asset;
  '/app.css': Asset;
  '/': Asset;
}

/**
 * lib/tariff.ts (shared with the PES, which reads tariff files) imports `node:fs` for `loadTariff` alone; the
 * browser uses only its pure parser and band lookup. This resolves `node:fs` to a stub whose functions throw,
 * so a browser path that ever reached the file system would fail loudly instead of silently.
 */
const noNodeFs: Plugin = {
  name: 'no-node-fs',
  setup(b) {
    b.onResolve({ filter: /^node:fs$/ }, () => ({ path: 'node:fs', namespace: 'no-node-fs' }));
    b.onLoad({ filter: /.*/, namespace: 'no-node-fs' }, () => ({
      contents: "export function readFileSync() { throw new Error('node:fs is not available in the browser'); }",
      loader: 'js',
    }));
  },
};

const asset = (body: Buffer, type: string): Asset => ({ body, type, etag: `"${createHash('sha256').update(body).digest('hex').slice(0, 32)}"` });

let cached: Promise<AppBundle> | undefined;

/**
 * The bundle with a line of text (escaped) as the first thing in the page's body: the demo's "simulated time".
 * @example
 * ```ts
 * const app = withBanner(await appBundle(), 'Simulated time: 1440x real time');
 * ```
 */
export function withBanner(app: AppBundle, text: string): AppBundle {
  const escaped = text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const page = app['/'].body.toString('utf8').replace('<body>', `<body>\n<p class="banner" role="note" data-testid="banner">${escaped}</p>`);
  return { ...app, '/': asset(Buffer.from(page), app['/'].type) };
}

/**
 * The bundled app (built on first call, then reused).
 * @example
 * ```ts
 * const app = await appBundle(); reply.type(app['/app.js'].type).send(app['/app.js'].body);
 * ```
 */
export function appBundle(): Promise<AppBundle> {
  cached ??= (async () => {
    const r = await build({
      entryPoints: [join(here, 'web', 'main.ts')],
      bundle: true,
      platform: 'browser',
      format: 'esm',
      target: 'es2022',
      write: false,
      minify: true,
      sourcemap: false,
      legalComments: 'none',
      outdir: join(here, 'web', 'dist'),
      entryNames: 'app',
      logLevel: 'silent',
      define: { 'process.env.NODE_ENV': '"production"' },
      plugins: [noNodeFs],
    });
    const js = r.outputFiles.find((f) => f.path.endsWith('.js'));
    const css = r.outputFiles.find((f) => f.path.endsWith('.css'));
    if (!js || !css) throw new Error('ucs: the app bundle lacks its script or style sheet');
    const html = readFileSync(join(here, 'web', 'index.html'));
    return {
      '/app.js': asset(Buffer.from(js.contents), 'text/javascript; charset=utf-8'),
      '/app.css': asset(Buffer.from(css.contents), 'text/css; charset=utf-8'),
      '/': asset(html, 'text/html; charset=utf-8'),
    };
  })();
  cached.catch(() => (cached = undefined));
  return cached;
}
