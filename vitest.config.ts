import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { defineConfig } from 'vitest/config';

/**
 * Files that take a minute or more (the crash scenarios: wall-clock streams with kills and restarts, mostly
 * waiting). Vitest runs files it has no timings for largest first; these are small, so a fresh clone (CI) ran
 * them last and the suite ended on them. They start first, and the rest fills the other worker.
 */
const LONG = ['test/crash/crash.test.ts', 'test/crash/cluster.test.ts', 'test/crash/e2e.test.ts'];

class LongFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (f: TestSpecification) => {
      const i = LONG.findIndex((l) => f.moduleId.endsWith(l));
      return i < 0 ? LONG.length : i;
    };
    return sorted.map((f, i) => ({ f, i })).sort((a, b) => rank(a.f) - rank(b.f) || a.i - b.i).map(({ f }) => f);
  }
}

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // The machine has 2 cores; end-to-end tests start brokers and servers of their own.
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    sequence: { sequencer: LongFirst },
  },
});
