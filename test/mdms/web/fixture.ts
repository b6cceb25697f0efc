/**
 * Test fixture for the web app: a store seeded through the Store API with realistic data (3 neighbourhoods x
 * 1 week x 15-minute intervals, a few revised; 4 households x 7 daily periods x 2 bands), a fleet, a tariff,
 * and one user per role (admin, analyst, billing, privacy).
 */
import { DateTime } from 'luxon';
import type { Fleet } from '../../../lib/keyset.js';
import { openStore } from '../../../mdms/store/index.js';
import type { Store } from '../../../mdms/store/types.js';
import { openWebDb, type WebDb } from '../../../mdms/web/db.js';
import { startMdmsWeb, buildMdmsWeb, type MdmsWeb } from '../../../mdms/web/server.js';
import type { Role } from '../../../mdms/web/roles.js';
import { sqliteDb, postgresDb, type TestDb } from './db-helpers.js';
import type { FastifyInstance } from 'fastify';

export const TZ = 'Europe/London';
/** Monday 3 June 2024, local midnight in London. */
export const WEEK_START = DateTime.fromISO('2024-06-03', { zone: TZ }).toSeconds();
export const DAY = 86_400;
export const NEIGHBOURHOODS = ['nb-east', 'nb-north', 'nb-west'] as const;
export const HOUSEHOLDS = ['hh01', 'hh02', 'hh03', 'hh04'] as const;
const METERS: Record<string, number> = { 'nb-east': 24, 'nb-north': 31, 'nb-west': 18 };

/** A deterministic pseudo-random sequence (tests must not depend on Math.random). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Average household demand in W at a local time of day (a night base, a morning bump, an evening peak). */
function profileW(localHour: number): number {
  const bump = (h: number, w: number, a: number) => a * Math.exp(-(((localHour - h) / w) ** 2));
  return 220 + bump(7.5, 1.2, 420) + bump(13, 2, 180) + bump(18.75, 1.6, 900);
}

export interface Seeded {
  /** Every neighbourhood row inserted: key, start, energy, meters, revision (latest). */
  intervals: { neighbourhood: string; start: number; end: number; meters: number; energyWh: number; revision: number }[];
  billing: { household: string; start: number; end: number; bands: Record<string, number> }[];
}

/**
 * Seeds the store through its public API.
 * @example
 * ```ts
 * const seeded = await seedStore(store);
 * ```
 */
export async function seedStore(store: Store, days = 7): Promise<Seeded> {
  const rnd = lcg(42);
  const intervals: Seeded['intervals'] = [];
  for (const nb of NEIGHBOURHOODS) {
    for (let t = WEEK_START; t < WEEK_START + days * DAY; t += 900) {
      const local = DateTime.fromSeconds(t, { zone: TZ });
      const meters = METERS[nb]! - (rnd() < 0.03 ? 1 + Math.floor(rnd() * 3) : 0);
      const w = profileW(local.hour + local.minute / 60) * (0.85 + 0.3 * rnd());
      const energyWh = Math.round((meters * w) / 4);
      await store.insertNeighbourhood({ kind: 'neighbourhood', key: nb, start: t, end: t + 900, revision: 0, meters, energyWh });
      let row = { neighbourhood: nb, start: t, end: t + 900, meters, energyWh, revision: 0 };
      // The PES re-releases a few intervals (late readings): revision 1 with one more meter.
      if (rnd() < 0.01) {
        row = { ...row, meters: meters + 1, energyWh: energyWh + Math.round(w / 4), revision: 1 };
        await store.insertNeighbourhood({ kind: 'neighbourhood', key: nb, start: t, end: t + 900, revision: 1, meters: row.meters, energyWh: row.energyWh });
      }
      intervals.push(row);
    }
  }
  const billing: Seeded['billing'] = [];
  for (const hh of HOUSEHOLDS) {
    for (let d = 0; d < days; d++) {
      const start = DateTime.fromSeconds(WEEK_START, { zone: TZ }).plus({ days: d }).toSeconds();
      const end = DateTime.fromSeconds(WEEK_START, { zone: TZ }).plus({ days: d + 1 }).toSeconds();
      const bands = { peak: 4000 + Math.floor(rnd() * 6000), offpeak: 2000 + Math.floor(rnd() * 4000) };
      await store.insertBilling({ kind: 'billing', key: hh, start, end, revision: 0, bands });
      billing.push({ household: hh, start, end, bands });
    }
  }
  return { intervals, billing };
}

/**
 * A fleet matching the seeded data.
 * @example
 * ```ts
 * const fleet = testFleet();
 * ```
 */
export function testFleet(): Fleet {
  const meters = HOUSEHOLDS.map((hh, i) => ({
    meter: `534d5200000000${(i + 1).toString(16).padStart(2, '0')}`,
    label: `m${i + 1}`,
    household: hh,
    neighbourhood: NEIGHBOURHOODS[i % 3]!,
    gateway: `gw-${NEIGHBOURHOODS[i % 3]!}`,
    source: `synthetic:${i}`,
  }));
  return {
    version: 1,
    meters,
    gateways: NEIGHBOURHOODS.map((n) => `gw-${n}`),
    households: [...HOUSEHOLDS],
    neighbourhoods: [...NEIGHBOURHOODS],
  };
}

/** The tariff every test bills with: 30 p/kWh peak, 15 p/kWh off-peak, 53.35 p/day, VAT 5 %. */
export const TOU = {
  code: 'tou',
  name: 'Time of use 2024',
  currency: 'GBP',
  minorDigits: 2,
  tz: TZ,
  effectiveFrom: '2024-01-01',
  standingMilliPerDay: 53_350,
  vatBasisPoints: 500,
  bands: [
    { band: 'peak', priceMilliPerKwh: 30_000 },
    { band: 'offpeak', priceMilliPerKwh: 15_000 },
  ],
  schedule: { tz: TZ, bands: [{ name: 'peak', rules: [{ days: [1, 2, 3, 4, 5], from: '07:00', to: '23:00' }] }, { name: 'offpeak', default: true }] },
};

export const PASSWORDS: Record<string, string> = {
  admin: 'admin-password-0001',
  analyst: 'analyst-password-0001',
  billing: 'billing-password-0001',
  privacy: 'privacy-password-0001',
};

export interface Fixture {
  db: TestDb;
  store: Store;
  web: WebDb;
  seeded: Seeded;
  close(): Promise<void>;
}

/**
 * A seeded database with users (admin, analyst, billing, privacy), the TOU tariff as default, and accounts opened.
 * @example
 * ```ts
 * const fx = await fixture();
 * ```
 */
export async function fixture(kind: 'sqlite' | 'postgres' = 'sqlite', days = 7): Promise<Fixture> {
  const db = kind === 'sqlite' ? sqliteDb() : postgresDb();
  const store = await openStore(db.url, db.schema ? { schema: db.schema } : {});
  const seeded = await seedStore(store, days);
  const web = await openWebDb(db.driver);
  for (const role of ['admin', 'analyst', 'billing', 'privacy'] as Role[]) await web.users.create({ username: role, roles: [role], password: PASSWORDS[role]! });
  await web.tariffs.create(TOU, 'admin');
  await web.settings.set({ defaultTariff: 'tou', timezone: TZ, utilityName: 'Thames Valley Power' });
  await web.accounts.ensure(HOUSEHOLDS);
  return {
    db,
    store,
    web,
    seeded,
    close: async () => {
      await store.close();
      await db.cleanup();
    },
  };
}

/**
 * The app over a fixture, not listening (for `inject`).
 * @example
 * ```ts
 * const app = await appOf(fx);
 * ```
 */
export async function appOf(
  fx: Fixture,
  opts: { loginMax?: number; metricsToken?: string; onRoute?: (r: { method: string; url: string; access: string }) => void } = {},
): Promise<FastifyInstance> {
  return buildMdmsWeb({
    store: fx.store,
    web: fx.web,
    fleet: testFleet(),
    loginRateLimit: { max: opts.loginMax ?? 1000, timeWindowMs: 60_000 },
    ...(opts.metricsToken ? { metricsToken: opts.metricsToken } : {}),
    ...(opts.onRoute ? { onRoute: opts.onRoute } : {}),
  });
}

/**
 * The app over a fixture, listening on a free loopback port.
 * @example
 * ```ts
 * const { url } = await serve(fx);
 * ```
 */
export async function serve(fx: Fixture): Promise<MdmsWeb> {
  return startMdmsWeb({ store: fx.store, driver: fx.db.driver, fleet: testFleet(), port: 0, host: '127.0.0.1', loginRateLimit: { max: 1000, timeWindowMs: 60_000 } });
}
