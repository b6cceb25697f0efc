/**
 * What the UCS server tells a logged-in household beyond its ciphertext: its tariff (`--tariff`, served as
 * the file says, validated at start), its meters and neighbourhoods with their provisioned sizes, and the
 * broker URL for its own tools — each only with a session, each with nothing about a reading.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadHouseholdTariff } from '../../ucs/tariff.js';
import { parseHouseholdTariff } from '../../ucs/web/bill.js';
import { makeKeySet, NodeHousehold, startStack, type KeySet, type Stack } from './helpers.js';

const PASSWORD = 'a long enough passphrase';
const TARIFF = {
  name: 'Demo time of use',
  tz: 'Europe/London',
  bands: [{ name: 'peak', rules: [{ days: [1, 2, 3, 4, 5], from: '16:00', to: '19:00' }] }, { name: 'offpeak', default: true }],
  billing: { period: '1mo', tz: 'Europe/London' },
  prices: [
    {
      effectiveFrom: '2024-01-01',
      currency: 'GBP',
      minorDigits: 2,
      standingMilliPerDay: 53_350,
      vatBasisPoints: 500,
      bands: [
        { band: 'peak', priceMilliPerKwh: 38_000, feedInMilliPerKwh: 15_000 },
        { band: 'offpeak', priceMilliPerKwh: 14_000 },
      ],
    },
  ],
};

let set: KeySet;
let stack: Stack;
let plain: Stack;
beforeAll(async () => {
  set = await makeKeySet();
  const file = join(set.dir, 'tariff.json');
  writeFileSync(file, JSON.stringify(TARIFF));
  stack = await startStack({ set, ucs: { tariff: loadHouseholdTariff(file), householdMqttUrl: 'mqtts://broker.example.net:8883' } });
  plain = await startStack({ set, ucs: { dbPath: join(set.dir, 'plain.sqlite') } });
});
afterAll(async () => {
  await stack?.close();
  await plain?.close();
  set?.cleanup();
});

describe('household facts', () => {
  it('serves the tariff file as written, the household’s own meters and neighbourhoods, and the broker URL for its tools', async () => {
    const a = new NodeHousehold(stack.ucs.url, 'hh1');
    for (const path of ['/api/tariff', '/api/household']) expect(await a.call('GET', path)).toMatchObject({ status: 401, json: { error: 'no-session' } });
    expect((await a.register(set.code('hh1'), PASSWORD)).status).toBe(200);
    const t = await a.call('GET', '/api/tariff');
    expect(t).toEqual({ status: 200, json: { configured: true, tariff: TARIFF } });
    expect(parseHouseholdTariff(t.json.tariff).versions[0]!.bands[0]).toEqual({ band: 'peak', priceMilliPerKwh: 38_000, feedInMilliPerKwh: 15_000 });
    const meter = set.fleet.meters.find((m) => m.household === 'hh1')!;
    expect(await a.call('GET', '/api/household')).toEqual({
      status: 200,
      json: { household: 'hh1', meters: [{ meter: meter.meter, label: meter.label, neighbourhood: 'nb1' }], neighbourhoods: [{ neighbourhood: 'nb1', provisionedMeters: 2 }] },
    });
    const broker = await a.call('GET', '/api/broker');
    expect(broker.json).toMatchObject({ mqttUrl: 'mqtts://broker.example.net:8883', username: 'household-hh1', wsUrl: stack.broker.wsUrl });
  });

  it('says when it has no tariff, and the broker URL for tools defaults to the browser’s', async () => {
    const b = new NodeHousehold(plain.ucs.url, 'hh2');
    expect((await b.register(set.code('hh2'), PASSWORD)).status).toBe(200);
    expect(await b.call('GET', '/api/tariff')).toEqual({ status: 200, json: { configured: false } });
    expect((await b.call('GET', '/api/broker')).json).toMatchObject({ mqttUrl: plain.broker.wsUrl, username: 'household-hh2' });
    expect((await b.call('GET', '/api/household')).json).toMatchObject({ household: 'hh2', neighbourhoods: [{ neighbourhood: 'nb1', provisionedMeters: 2 }] });
  });

  it('refuses a tariff file it cannot use at start, naming the file and the problem', () => {
    const at = (name: string, text: string) => {
      const f = join(set.dir, name);
      writeFileSync(f, text);
      return f;
    };
    expect(() => loadHouseholdTariff(join(set.dir, 'missing.json'))).toThrow(/cannot read --tariff .*missing\.json: ENOENT/);
    expect(() => loadHouseholdTariff(at('bad.json', '{"tz":'))).toThrow(/--tariff .*bad\.json is not valid JSON/);
    expect(() => loadHouseholdTariff(at('unpriced.json', JSON.stringify({ ...TARIFF, prices: [{ ...TARIFF.prices[0], bands: [{ band: 'peak', priceMilliPerKwh: 1 }] }] })))).toThrow(
      /--tariff .*unpriced\.json: tariff.prices\[0\]: band "offpeak" of the schedule has no price/,
    );
  });
});
