/**
 * Loads the augurs WebAssembly modules (`@bsull/augurs`) once, synchronously.
 *
 * The package is built for the web target: its default initialiser `fetch`es `new URL('x_bg.wasm',
 * import.meta.url)`, and Node's `fetch` refuses `file:` URLs, so under Node (tsx, vitest) the default import
 * fails. Each module also exports `initSync`, which takes the WebAssembly bytes; we read them from beside the
 * module's JavaScript file. No network, no top-level await.
 * @module
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as changepoint from '@bsull/augurs/changepoint';
import * as mstl from '@bsull/augurs/mstl';
import * as outlier from '@bsull/augurs/outlier';

const require = createRequire(import.meta.url);
const loaded = new Set<string>();

function load(name: string, init: (m: { module: Buffer }) => unknown): void {
  if (loaded.has(name)) return;
  const dir = dirname(require.resolve(`@bsull/augurs/${name}`));
  init({ module: readFileSync(join(dir, `${name}_bg.wasm`)) });
  loaded.add(name);
}

/**
 * The MSTL module, initialised.
 * @example
 * ```ts
 * const model = augursMstl().MSTL.ets([96, 672]);
 * ```
 */
export function augursMstl(): typeof mstl {
  load('mstl', mstl.initSync);
  return mstl;
}

/**
 * The change-point module, initialised.
 * @example
 * ```ts
 * augursChangepoint().ChangepointDetector.normalGamma().detectChangepoints([1, 1, 1, 9, 9, 9]).indices;
 * ```
 */
export function augursChangepoint(): typeof changepoint {
  load('changepoint', changepoint.initSync);
  return changepoint;
}

/**
 * The outlier module (DBSCAN and MAD detectors over a group of series), initialised.
 * @example
 * ```ts
 * augursOutlier().OutlierDetector.mad({ sensitivity: 0.1 }).detect([[0, 0.1], [0.1, 0], [0, 2]]).outlyingSeries;
 * ```
 */
export function augursOutlier(): typeof outlier {
  load('outlier', outlier.initSync);
  return outlier;
}
