/**
 * The household app once over TLS, as a household on another machine reaches it: the embedded broker with
 * `--tls-cert/--tls-key` semantics (mqtts + wss) on all interfaces, the household app server run by its CLI
 * (`smartermeter ucs --host 0.0.0.0 --tls-cert … --tls-key … --mqtt mqtts://… --ws wss://…`, trusting the
 * test CA through NODE_EXTRA_CA_CERTS, as docs/operations.md says), and Chromium opening it at the machine's
 * own non-loopback address when it has one: there plain HTTP would not be a secure context and WebCrypto would
 * be missing, so registering proves the page came over HTTPS; the live status proves the browser's wss link.
 * Chromium runs with --ignore-certificate-errors (the certificate names 127.0.0.1 and localhost only).
 * Needs /usr/bin/chromium (or SM_CHROMIUM) and openssl: skipped without Chromium, except in CI where it fails.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join, resolve } from 'node:path';
import mqtt from 'mqtt';
import { chromium, type Browser } from 'playwright-core';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerHandle } from '../../broker/broker.js';
import { makeTestCerts, type TestCerts } from '../broker/tls-certs.js';
import { freePort } from '../gateway/helpers.js';
import { loadCredentials } from '../../lib/keyset.js';
import { topics } from '../../protocol/topics.js';
import { makeKeySet, usersOf, waitFor, type KeySet, submitRegistration } from './helpers.js';

const CHROMIUM = process.env.SM_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
const CLI = resolve(import.meta.dirname, '../../bin/smartermeter.js');
const PASSWORD = 'correct horse battery staple';

/** The machine's first non-internal IPv4 address, or 127.0.0.1 without one. */
function ownAddress(): string {
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return '127.0.0.1';
}

describe.skipIf(!haveChromium && process.env.CI !== 'true')('household app over https and wss in Chromium', () => {
  let set: KeySet;
  let certs: TestCerts;
  let broker: BrokerHandle;
  let ucs: ChildProcess;
  let url: string;
  let browser: Browser;
  let output = '';
  const address = ownAddress();

  beforeAll(async () => {
    if (!haveChromium) throw new Error(`Chromium not found at ${CHROMIUM} (CI=true: this test must run)`);
    set = await makeKeySet();
    certs = makeTestCerts(set.dir);
    broker = await startBroker({ users: usersOf(set.keys), host: '0.0.0.0', port: 0, wsPort: 0, tls: { cert: certs.cert, key: certs.key }, logger: pino({ level: 'silent' }) });
    const port = await freePort();
    ucs = spawn(
      process.execPath,
      [CLI, 'ucs', '--http', String(port), '--host', '0.0.0.0', '--keys', set.keys, '--db', join(set.dir, 'ucs.sqlite'), '--mqtt', `mqtts://127.0.0.1:${broker.port}`, '--ws', `wss://${address}:${broker.wsPort}`, '--tls-cert', certs.certFile, '--tls-key', certs.keyFile],
      { env: { ...process.env, NODE_EXTRA_CA_CERTS: certs.caFile }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    ucs.stdout!.on('data', (c: Buffer) => (output += String(c)));
    ucs.stderr!.on('data', (c: Buffer) => (output += String(c)));
    await waitFor(() => /household app at https:\/\/0\.0\.0\.0:\d+/.test(output), `the household app to listen over https:\n${output}`, 60_000);
    await waitFor(() => /ucs: connected to the broker/.test(output), `the household app to reach the broker over mqtts:\n${output}`, 30_000);
    url = `https://${address}:${port}`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync', '--ignore-certificate-errors'],
    });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    if (ucs && ucs.exitCode === null) {
      const exited = new Promise((r) => ucs.once('exit', r));
      ucs.kill('SIGTERM');
      await exited;
    }
    await broker?.close();
    set?.cleanup();
  });

  it('registers over https, the browser key reaches the PES topic, and the browser is live over wss', async () => {
    const context = await browser.newContext({ locale: 'en-GB' });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    expect(await page.evaluate(() => window.isSecureContext && typeof crypto.subtle?.generateKey === 'function')).toBe(true);
    await page.click('#to-register');
    await submitRegistration(page, 'hh1', set.code('hh1'), PASSWORD);
    await page.waitForSelector('#screen-app:not([hidden])', { timeout: 60_000 });
    await expect.poll(() => page.locator('#notice').textContent(), { timeout: 30_000 }).toMatch(/Household hh1 is registered\. Your public key has been sent to the PES/);
    await expect.poll(() => page.locator('#conn').getAttribute('data-status'), { timeout: 30_000 }).toBe('live');
    // The key the browser made is retained for the PES (read over mqtts with the CA, as the PES would).
    const pes = await mqtt.connectAsync(`mqtts://127.0.0.1:${broker.port}`, { ...loadCredentials(set.keys, 'pes'), ca: certs.ca, clientId: 'pes-probe-tls', reconnectPeriod: 0 });
    const key = new Promise<Buffer>((r) => pes.once('message', (_t, p) => r(p)));
    await pes.subscribeAsync(topics.householdKey('hh1'), { qos: 1 });
    expect((await key).length).toBeGreaterThan(0);
    await pes.endAsync();
    expect(errors).toEqual([]);
    await context.close();
  }, 120_000);
});
