/**
 * `smartermeter demo --e2e` (`npm start -- --e2e`, issue 12): the demo provisions an end-to-end key set and runs
 * that mode: the MDMS stores aggregates it could only get from the PES's and the guardian's partials together,
 * and a household that registers at the household app with its printed activation code reads its own stream,
 * sealed by its meters (the archive the app serves, opened as the browser opens it, with the stream key the
 * browser derived from the code and keeps under its password). Also `ucs watch`'s opener, from the code alone.
 * In process and small (3 households, a day of history): the compiled CLI's own start is demo.test.ts's.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startDemo, type DemoHandle } from '../../cli/demo.js';
import { loadCredentials, loadFleet } from '../../lib/keyset.js';
import { parseStreamBody } from '../../protocol/stream.js';
import { topics } from '../../protocol/topics.js';
import { readStreamKey, subscribeHouseholdStream } from '../../ucs/stream.js';
import { loadActivation } from '../../ucs/activation.js';
import { fromB64u } from '../../ucs/web/bytes.js';
import { importPrivateKey, keyIdOf } from '../../ucs/web/keys.js';
import { importPesVerifyKey, importStreamKey, type OpenError, StreamOpener } from '../../ucs/web/seal.js';
import { NodeHousehold } from '../ucs/helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'sm-demo-e2e-'));
let demo: DemoHandle | undefined;
afterAll(async () => {
  await demo?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function until(what: string, ok: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('smartermeter demo --e2e', () => {
  it('runs the end-to-end mode: the MDMS stores aggregates, and a registered household reads the stream its meters sealed', async () => {
    demo = await startDemo({ dir, neighbourhoods: 1, householdsPerNeighbourhood: 3, k: 3, speed: 'live', historyDays: 1, brokerPort: 0, wsPort: 0, mdmsPort: 0, ucsPort: 0, e2e: true });
    const keys = join(dir, 'keys');
    expect(existsSync(join(keys, 'guardian'))).toBe(true);
    expect(demo.system.guardian).toBeDefined();
    const fleet = loadFleet(keys);
    const hh = fleet.households[0]!;
    const code = readFileSync(join(keys, 'households', `${hh}.activation`), 'utf8').trim();
    expect(Object.values(demo.credentials)).toContain(`activation code ${code}`);

    // The household's own tool (ucs watch): its broker user and the activation code, no private key at all.
    const rows: number[] = [];
    const watch = subscribeHouseholdStream({ household: hh, streamKey: readStreamKey(join(keys, 'households', `${hh}.activation`), hh, loadActivation(keys).derivation), url: demo.system.mqttUrl, ...loadCredentials(keys, `household-${hh}`), onRows: (r) => void rows.push(...r.map((x) => x.time)) });
    await watch.ready;

    // Registration as the browser does it; the server's archive then holds what the meters sealed.
    const home = new NodeHousehold(demo.urls.household!, hh);
    const reg = await home.register(code, 'a long enough passphrase');
    expect(reg.status).toBe(200);
    const login = await home.login('a long enough passphrase');
    expect(login.status).toBe(200);
    expect(Buffer.from(login.streamKey!)).toEqual(Buffer.from(reg.streamKey!));
    const pes = (await home.call('GET', '/api/pes-key')).json as { spki: string };
    const opener = new StreamOpener(await importPrivateKey(login.pkcs8!), await keyIdOf(reg.spki!), await importPesVerifyKey(fromB64u(pes.spki, 'spki')), await importStreamKey(login.streamKey!));
    let opened = 0;
    let first: Uint8Array | undefined;
    const meters = new Set<string>();
    await until('the archive to hold a meter-sealed message of the household', async () => {
      const page = (await home.call('GET', '/api/archive?after=0&limit=50')).json as { items: [number, string][] };
      for (const [, payload] of page.items) {
        first ??= fromB64u(payload, 'archived');
        const body = parseStreamBody(await opener.open(topics.household(hh), fromB64u(payload, 'archived')));
        meters.add(body.meter);
        opened += body.readings.length;
      }
      return opened > 0;
    }, 120_000);
    expect([...meters].every((m) => fleet.meters.some((x) => x.meter === m && x.household === hh))).toBe(true);
    // The same sealed message presented again (what a broker or a stolen PES password could publish): dropped.
    expect(await opener.open(topics.household(hh), first!).then(() => 'opened', (e: unknown) => (e as OpenError).reason)).toBe('duplicate');

    await until('the MDMS to store an aggregate', () => demo!.system.mdms.counters.stored > 0, 180_000);
    await until('ucs watch to print readings', () => rows.length > 0, 30_000);
    expect(watch.counters.rejected).toBe(0);
    await watch.close();
    expect(demo.system.pes.pes.counters.streamMessages).toBeGreaterThan(0);
  }, 360_000);
});
