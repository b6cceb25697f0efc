/**
 * Debian's Chromium for the MDMS browser tests: where it is, whether it is there (under CI=true it must be),
 * and one launch with the flags every test uses, in a throwaway profile that closing removes.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type BrowserContextOptions } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const present = existsSync(CHROMIUM);
if (!present && process.env.CI === 'true') throw new Error(`Chromium is required under CI and missing at ${CHROMIUM} (apt-get install -y chromium)`);

/**
 * A headless persistent context (no sandbox, no GPU, no background traffic) with `options` (viewport, touch…).
 * @example
 * ```ts
 * const browser = await launchChromium({ viewport: { width: 1360, height: 900 } });
 * const page = await browser.ctx.newPage();
 * await browser.close(); // also removes the profile
 * ```
 */
export async function launchChromium(options: BrowserContextOptions, prefix = 'mdms-chromium-'): Promise<{ ctx: BrowserContext; close(): Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), prefix));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    ...options,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'],
  });
  return {
    ctx,
    async close() {
      await ctx.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
