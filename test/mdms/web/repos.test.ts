import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore, SCHEMA_VERSION } from '../../../mdms/store/index.js';
import type { Store } from '../../../mdms/store/types.js';
import { ACCOUNT_NUMBER } from '../../../mdms/web/accounts.js';
import { accountBill, pricedPeriods } from '../../../mdms/web/bills.js';
import { BillingError } from '../../../lib/billing.js';
import { openWebDb, type WebDb } from '../../../mdms/web/db.js';
import { migrateWeb, WEB_SCHEMA_VERSION } from '../../../mdms/web/migrations.js';
import { generatePassword, UserError } from '../../../mdms/web/users.js';
import { postgresDb, postgresReachable, sqliteDb, type TestDb } from './db-helpers.js';

const pg = await postgresReachable();
const T0 = Date.UTC(2024, 5, 1);

const tou = {
  code: 'tou',
  name: 'Time of use',
  currency: 'GBP',
  minorDigits: 2,
  tz: 'Europe/London',
  effectiveFrom: '2024-01-01',
  standingMilliPerDay: 53_350,
  vatBasisPoints: 500,
  bands: [
    { band: 'peak', priceMilliPerKwh: 30_000 },
    { band: 'offpeak', priceMilliPerKwh: 15_000 },
  ],
};

describe.each([
  ['sqlite', true, sqliteDb],
  ['postgres', pg, postgresDb],
] as const)('web repositories on %s', (_name, available, make) => {
  let db: TestDb;
  let web: WebDb;
  let store: Store;
  let clock = T0;
  const now = (): number => clock;

  beforeEach(async (ctx) => {
    if (!available) return ctx.skip();
    clock = T0;
    db = make();
    store = await openStore(db.url, db.schema ? { schema: db.schema } : {});
    web = await openWebDb(db.driver, { now, sessions: { idleMs: 30 * 60_000, absoluteMs: 12 * 3_600_000 } });
  });
  afterEach(async () => {
    if (!available) return;
    await store.close();
    await db.cleanup();
  });

  it('migrates idempotently next to the store, with its own version table', async () => {
    expect(await migrateWeb(db.driver)).toBe(WEB_SCHEMA_VERSION);
    expect(await store.schemaVersion()).toBe(SCHEMA_VERSION);
    const [v] = await db.driver.query('SELECT max(version) AS v FROM web_schema_version', []);
    expect(Number(v!.v)).toBe(WEB_SCHEMA_VERSION);
    await db.driver.run('INSERT INTO web_schema_version (version, description, applied_at_ms) VALUES (?, ?, ?)', [WEB_SCHEMA_VERSION + 1, 'future', 0]);
    await expect(migrateWeb(db.driver)).rejects.toThrow(/newer than this MDMS/);
  });

  it('users: create, verify, refuse duplicates and weak passwords, keep the last admin', async () => {
    const pw = generatePassword();
    const admin = await web.users.create({ username: 'Root', roles: ['admin'], password: pw });
    expect(admin).toMatchObject({ username: 'root', roles: ['admin'], disabled: false });
    await expect(web.users.create({ username: 'root', roles: ['analyst'], password: generatePassword() })).rejects.toThrow(/already exists/);
    await expect(web.users.create({ username: 'ann', roles: ['analyst'], password: 'short' })).rejects.toThrow(UserError);
    await expect(web.users.create({ username: 'x', roles: ['analyst'], password: generatePassword() })).rejects.toThrow(/username/);
    expect((await web.users.verify('ROOT', pw))?.id).toBe(admin.id);
    expect(await web.users.verify('root', pw + 'x')).toBeNull();
    expect(await web.users.verify('nobody', pw)).toBeNull();
    const [stored] = await db.driver.query('SELECT password_hash FROM web_user', []);
    expect(String(stored!.password_hash)).toMatch(/^32768:8:1:[0-9a-f]{32}:[0-9a-f]{64}$/);
    expect(String(stored!.password_hash)).not.toContain(pw);
    await expect(web.users.update(admin.id, { roles: ['analyst'] })).rejects.toThrow(/last enabled administrator/);
    const second = await web.users.create({ username: 'root2', roles: ['admin', 'billing'], password: generatePassword() });
    expect(second.roles).toEqual(['admin', 'billing']);
    expect((await web.users.update(admin.id, { disabled: true })).disabled).toBe(true);
    expect(await web.users.verify('root', pw)).toBeNull();
  });

  it('sessions: only a hash is stored; idle and absolute expiry; password change and disabling end them', async () => {
    const u = await web.users.create({ username: 'bill', roles: ['billing'], password: generatePassword() });
    const a = await web.users.startSession(u, '127.0.0.1', 'test');
    const b = await web.users.startSession(u, '127.0.0.1', 'test');
    const rows = await db.driver.query('SELECT token_hash FROM web_session', []);
    expect(rows.map((r) => r.token_hash)).not.toContain(a.token);
    const sa = await web.users.session(a.token);
    expect(sa?.user.username).toBe('bill');
    expect(await web.users.session('not-a-token')).toBeNull();
    clock += 29 * 60_000;
    expect(await web.users.session(a.token)).not.toBeNull(); // refreshes a's idle clock
    clock += 2 * 60_000;
    expect(await web.users.session(b.token)).toBeNull(); // b idle for 31 min
    await web.users.setPassword(u.id, generatePassword(), sa!.tokenHash);
    expect(await web.users.session(a.token)).not.toBeNull(); // kept: the session that changed it
    const c = await web.users.startSession(u, '127.0.0.1', 'test');
    await web.users.setPassword(u.id, generatePassword(), sa!.tokenHash);
    expect(await web.users.session(c.token)).toBeNull();
    for (let i = 0; i < 25; i++) {
      clock += 29 * 60_000;
      await web.users.session(a.token);
    }
    expect(await web.users.session(a.token)).toBeNull(); // 12 h absolute
    const d = await web.users.startSession(u, '127.0.0.1', 'test');
    await web.users.create({ username: 'boss', roles: ['admin'], password: generatePassword() });
    await web.users.update(u.id, { disabled: true });
    expect(await web.users.session(d.token)).toBeNull();
  });

  it('tariffs: append-only versions, schedule must match the prices, withdraw only before they take effect', async () => {
    const v1 = await web.tariffs.create(tou, 'root');
    expect(v1).toMatchObject({ code: 'tou', effectiveFrom: '2024-01-01', bands: tou.bands, schedule: null, createdBy: 'root' });
    await expect(web.tariffs.create(tou, 'root')).rejects.toThrow(/already has a version effective/);
    await expect(web.tariffs.create({ ...tou, effectiveFrom: '2024-02-01', currency: 'EUR' }, 'root')).rejects.toThrow(/priced in GBP/);
    const schedule = { tz: 'Europe/London', bands: [{ name: 'peak', rules: [{ days: [1, 2, 3, 4, 5], from: '07:00', to: '23:00' }] }, { name: 'offpeak', default: true }] };
    const v2 = await web.tariffs.create({ ...tou, effectiveFrom: '2024-07-01', schedule }, 'root');
    expect(v2.schedule?.bands.map((b) => b.name)).toEqual(['peak', 'offpeak']);
    await expect(web.tariffs.create({ ...tou, effectiveFrom: '2024-08-01', bands: [tou.bands[0]!], schedule }, 'root')).rejects.toThrow(/cover exactly/);
    await expect(web.tariffs.create({ ...tou, code: 'Bad Code' }, 'root')).rejects.toThrow(BillingError);
    expect((await web.tariffs.versions('tou')).map((v) => v.effectiveFrom)).toEqual(['2024-01-01', '2024-07-01']);
    expect(await web.tariffs.codes()).toEqual(['tou']);
    await expect(web.tariffs.withdraw(v1.id)).rejects.toThrow(/took effect/);
    expect((await web.tariffs.withdraw(v2.id)).id).toBe(v2.id); // clock is 2024-06-01
    expect((await web.tariffs.list()).map((v) => v.id)).toEqual([v1.id]);
  });

  it('accounts: one pseudonymous number per household, idempotent, tariff choice', async () => {
    expect(await web.accounts.ensure(['hh1', 'hh2', 'hh1'])).toBe(2);
    expect(await web.accounts.ensure(['hh2', 'hh3'])).toBe(1);
    const all = await web.accounts.list();
    expect(all.map((a) => a.household).sort()).toEqual(['hh1', 'hh2', 'hh3']);
    for (const a of all) expect(a.accountNumber).toMatch(ACCOUNT_NUMBER);
    const a1 = (await web.accounts.byHousehold('hh1'))!;
    expect((await web.accounts.byNumber(a1.accountNumber))?.household).toBe('hh1');
    expect((await web.accounts.setTariff(a1.accountNumber, 'tou'))?.tariffCode).toBe('tou');
  });

  it('audit: hash-chained, filterable, and tampering is detected', async () => {
    for (const action of ['login', 'view.bill', 'export.billing'] as const) {
      clock += 1000;
      await web.audit.record({ userId: 1, username: 'bill', action, target: 'SM-0000-0001', outcome: 'ok', ip: '127.0.0.1', detail: { from: '2024-06-01' } });
    }
    await web.audit.record({ userId: null, username: 'mallory', action: 'login', target: '/login', outcome: 'failed', ip: '10.0.0.9' });
    expect((await web.audit.list()).map((e) => e.action)).toEqual(['login', 'export.billing', 'view.bill', 'login']);
    expect((await web.audit.list({ action: 'login' })).map((e) => e.outcome)).toEqual(['failed', 'ok']);
    expect((await web.audit.list({ username: 'bill', limit: 1 }))[0]).toMatchObject({ action: 'export.billing', detail: { from: '2024-06-01' } });
    const page1 = await web.audit.list({ limit: 2 });
    expect((await web.audit.list({ before: page1[1]!.id })).length).toBe(2);
    expect(await web.audit.verify()).toEqual({ entries: 4, ok: true, brokenAt: null });
    const second = (await web.audit.list({ action: 'view.bill' }))[0]!;
    await db.driver.run("UPDATE web_audit SET target = 'SM-0000-0002' WHERE id = ?", [second.id]);
    expect(await web.audit.verify()).toMatchObject({ ok: false, brokenAt: second.id });
  });

  it('settings: defaults, checked changes, a stable secret that is never listed', async () => {
    expect((await web.settings.all()).timezone).toBe('UTC');
    expect((await web.settings.set({ timezone: 'Europe/London', defaultTariff: 'tou' })).timezone).toBe('Europe/London');
    await expect(web.settings.set({ timezone: 'Nowhere/Else' })).rejects.toThrow(/IANA/);
    const s = await web.settings.secret('csrf');
    expect(s).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await web.settings.secret('csrf')).toBe(s);
    expect(JSON.stringify(await web.settings.all())).not.toContain(s);
  });

  it('bills: prices the store\'s latest revisions under the account tariff; periods across the edges are left out', async () => {
    const day = 86_400;
    const start = Date.UTC(2024, 5, 3) / 1000 - 3600; // local midnight in London (BST)
    for (let i = 0; i < 3; i++) {
      await store.insertBilling({ kind: 'billing', key: 'hh1', start: start + i * day, end: start + (i + 1) * day, revision: 0, bands: { peak: 4200, offpeak: 6100 } });
    }
    // A revision of day 2 replaces it.
    await store.insertBilling({ kind: 'billing', key: 'hh1', start: start + day, end: start + 2 * day, revision: 1, bands: { peak: 5000, offpeak: 6100 } });
    await web.accounts.ensure(await store.listHouseholds());
    const account = (await web.accounts.byHousehold('hh1'))!;
    await expect(accountBill(store, web, account, start, start + 3 * day)).rejects.toThrow(/no tariff and no default/);
    await web.tariffs.create(tou, 'root');
    await web.settings.set({ defaultTariff: 'tou' });
    const { bill, periods, leftOut } = await accountBill(store, web, account, start, start + 3 * day);
    expect(periods.map((p) => p.revision)).toEqual([0, 1, 0]);
    expect(leftOut).toEqual([]);
    // peak 13.4 kWh x 30 p = 402; offpeak 18.3 kWh x 15 p = 274.5 -> 274; 3 x 53.35 = 160.05 -> 160; VAT 5 % of 836 = 41.8 -> 42
    expect(bill.lines.map((l) => l.amountMinor)).toEqual([402, 274, 160]);
    expect(bill.totalMinor).toBe(878);
    const partial = await accountBill(store, web, account, start + 3600, start + 3 * day);
    expect(partial.periods.length).toBe(2);
    expect(partial.leftOut.map((p) => p.start)).toEqual([start]);
    await expect(accountBill(store, web, account, start + 3600, start + day + 3600)).rejects.toThrow(/straddle/);
    const priced = await pricedPeriods(store, web, account);
    expect(priced.periods.map((p) => p.totalMinor)).toEqual([285, 310, 285]);
    expect(priced.currency).toBe('GBP');
  });

  it('bills with feed-in: the tariff keeps a feed-in price per band (0 when not given), and exported energy is credited per band', async () => {
    const day = 86_400;
    const start = Date.UTC(2024, 5, 3) / 1000 - 3600;
    const plain = await web.tariffs.create(tou, 'root');
    expect(plain.bands.map((b) => b.feedInMilliPerKwh)).toEqual([0, 0]);
    const prosumer = await web.tariffs.create({ ...tou, code: 'solar', bands: [{ band: 'peak', priceMilliPerKwh: 30_000, feedInMilliPerKwh: 9_000 }, { band: 'offpeak', priceMilliPerKwh: 15_000, feedInMilliPerKwh: -500 }] }, 'root');
    expect((await web.tariffs.get(prosumer.id))!.bands).toEqual([
      { band: 'peak', priceMilliPerKwh: 30_000, feedInMilliPerKwh: 9_000 },
      { band: 'offpeak', priceMilliPerKwh: 15_000, feedInMilliPerKwh: -500 },
    ]);
    await expect(web.tariffs.create({ ...tou, code: 'bad', bands: [{ band: 'peak', priceMilliPerKwh: 1, feedInMilliPerKwh: 1.5 }] }, 'root')).rejects.toThrow(/feed-in price/);
    await store.insertBilling({ kind: 'billing', key: 'hh1', start, end: start + day, revision: 0, bands: { peak: 1000, offpeak: 2000 }, exportBands: { peak: 30_000, offpeak: 2000 } });
    await store.insertBilling({ kind: 'billing', key: 'hh1', start: start + day, end: start + 2 * day, revision: 0, bands: { peak: 4000, offpeak: 2000 } });
    await web.accounts.ensure(['hh1']);
    const account = (await web.accounts.setTariff((await web.accounts.byHousehold('hh1'))!.accountNumber, 'solar'))!;
    const { bill, periods } = await accountBill(store, web, account, start, start + 2 * day);
    expect(periods.map((p) => p.exportBands)).toEqual([{ peak: 30_000, offpeak: 2000 }, {}]);
    // peak 5 kWh x 30 p = 150; offpeak 4 kWh x 15 p = 60; fed in: peak 30 kWh x 9 p = -270, offpeak 2 kWh x -0.5 p = +1;
    // standing 2 x 53.35 = 106.7 -> 107; subtotal 48; VAT 5 % = 2.4 -> 2; total 50
    expect(bill.lines.map((l) => [l.kind, l.kind === 'standing' ? l.days : l.band, l.amountMinor])).toEqual([
      ['energy', 'peak', 150],
      ['energy', 'offpeak', 60],
      ['feedin', 'peak', -270],
      ['feedin', 'offpeak', 1],
      ['standing', 2, 107],
    ]);
    expect(bill).toMatchObject({ exportWh: 32_000, subtotalMinor: 48, vatMinor: 2, totalMinor: 50 });
    // The first day alone is a credit: 30 + 30 - 270 + 1 + 53 = -156, VAT -7.8 -> -8, total -164.
    const priced = await pricedPeriods(store, web, account);
    expect(priced.periods.map((p) => [p.exportWh, p.totalMinor])).toEqual([
      [32_000, -164],
      [0, 213], // 120 + 30 + 53 = 203, VAT 10.15 -> 10
    ]);
  });
});
