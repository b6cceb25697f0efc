/**
 * Issued bills and credit/debit notes, on SQLite and PostgreSQL (127.0.0.1:5432/test; FAILS under CI=true when
 * it is unreachable): freezing at the close of a period, immutability enforced by the database, numbering
 * without gaps or reuse (also across a restart), notes with exact differences, and over HTTP the roles, the
 * exports (HTML, CSV, JSON) and the audit trail.
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openWebDb, type WebDb } from '../../../mdms/web/db.js';
import { priceBill } from '../../../lib/billing.js';
import { periodsOf } from '../../../mdms/web/bills.js';
import { DOCUMENTS_CSV_HEADER, noteAmounts, runBills, type IssuedDocument } from '../../../mdms/web/issued.js';
import { openPostgres } from '../../../mdms/store/postgres.js';
import { openSqlite } from '../../../mdms/store/sqlite.js';
import { postgresReachable, PG_URL } from './db-helpers.js';
import { appOf, DAY, fixture, HOUSEHOLDS, PASSWORDS, TZ, WEEK_START, type Fixture } from './fixture.js';

const pg = await postgresReachable();
const YEAR = new Date().getUTCFullYear(); // the series year is the year of issue (display zone; not near New Year here)
const NOW = Date.now();

/** Half-to-even rounding of n / d, written out independently of the billing module. */
const rhe = (n: bigint, d: bigint): bigint => {
  const q = n / d;
  const r2 = (n % d) * 2n;
  return r2 > d || (r2 === d && q % 2n === 1n) ? q + 1n : q;
};

/** Every number of each series is 1..n exactly once. */
function expectGapFree(docs: IssuedDocument[]): void {
  const bySeries = new Map<string, number[]>();
  for (const d of docs) {
    const [, prefix, year, seq] = /^(B|CN|DN)-(\d{4})-(\d{6})$/.exec(d.number)!;
    const k = `${prefix}-${year}`;
    bySeries.set(k, [...(bySeries.get(k) ?? []), Number(seq)]);
  }
  for (const [, seqs] of bySeries) expect([...seqs].sort((a, b) => a - b)).toEqual(seqs.map((_, i) => i + 1));
}

for (const kind of ['sqlite', 'postgres'] as const) {
  describe.skipIf(kind === 'postgres' && !pg)(`issued bills on ${kind}`, () => {
    let fx: Fixture;
    const run = (web: WebDb = fx.web, nowMs = NOW) => runBills(fx.store, web, { by: 'billing', nowMs, tz: TZ });

    beforeAll(async () => {
      fx = await fixture(kind, 2);
    }, 120_000);
    afterAll(async () => {
      await fx?.close();
    });

    it('freezes one bill per ended period, numbered in sequence, priced as the billing core prices it', async () => {
      // A period that has not ended yet is not billed.
      const future = Math.floor(NOW / 1000) - 3600;
      await fx.store.insertBilling({ kind: 'billing', key: 'hh04', start: future, end: future + DAY, revision: 0, bands: { peak: 1000, offpeak: 500 } });
      const r = await run();
      expect(r.skipped).toEqual([]);
      expect(r.issued.length).toBe(HOUSEHOLDS.length * 2);
      expect(r.issued.map((d) => d.number)).toEqual(r.issued.map((_, i) => `B-${YEAR}-${String(i + 1).padStart(6, '0')}`));
      const versions = await fx.web.tariffs.versions('tou');
      for (const d of r.issued) {
        const period = periodsOf(await fx.store.latestBilling({ household: d.household })).find((p) => p.start === d.periodStart)!;
        const priced = priceBill([period], versions);
        expect(d).toMatchObject({ kind: 'bill', refersTo: null, revision: 0, bands: period.bands, tariffCode: 'tou', tariffIds: [versions[0]!.id], issuedBy: 'billing' });
        expect(d.lines).toEqual(priced.lines);
        expect(d.totalMinor).toBe(priced.totalMinor);
        expect(d.periodEnd).toBeLessThanOrEqual(WEEK_START + 2 * DAY);
        // Written out by hand: the peak line is Wh × 30 p/kWh rounded half to even.
        expect(BigInt(d.lines.find((l) => l.kind === 'energy' && l.band === 'peak')!.amountMinor)).toBe(rhe(BigInt(period.bands.peak!) * 30_000n, 1_000_000n));
      }
      expect(await fx.web.bills.byNumber(r.issued[0]!.number)).toEqual(r.issued[0]);
      // Running again issues nothing.
      expect((await run()).issued).toEqual([]);
      // Once the last period has ended, it is billed too.
      const later = await run(fx.web, (future + DAY) * 1000);
      expect(later.issued.map((d) => [d.number, d.household, d.periodStart])).toEqual([[`B-${YEAR}-000009`, 'hh04', future]]);
    });

    it('the database refuses to change, delete or renumber an issued document', async () => {
      const d = fx.db.driver;
      const refusals = [
        () => d.run('UPDATE web_bill SET total_minor = 0 WHERE seq = 1', []),
        () => d.run('UPDATE web_bill SET issued_by = ? WHERE seq = 1', ['mallory']),
        () => d.run('DELETE FROM web_bill WHERE seq = 1', []),
        () => d.run("UPDATE web_bill_series SET last_seq = 1 WHERE series LIKE 'B-%'", []),
        () => d.run("UPDATE web_bill_series SET last_seq = last_seq + 5 WHERE series LIKE 'B-%'", []),
        () => d.run('DELETE FROM web_bill_series', []),
        // A document must carry the next number of its series.
        () => d.run(
          `INSERT INTO web_bill (number, kind, series, seq, account_number, household, period_start, period_end, revision, tariff_code, tariff_ids, currency, minor_digits, bands_json, lines_json, vat_json, subtotal_minor, vat_minor, total_minor, issued_at_ms, issued_by)
           VALUES ('B-${YEAR}-000003', 'bill', 'B-${YEAR}', 3, 'SM-X', 'hhX', 0, 1, 0, 'tou', '[]', 'GBP', 2, '{}', '[]', '[]', 0, 0, 0, 0, 'mallory')`,
          [],
        ),
        ...(kind === 'postgres' ? [() => d.exec('TRUNCATE web_bill'), () => d.exec('TRUNCATE web_bill_series CASCADE')] : []),
      ];
      for (const attempt of refusals) await expect(attempt()).rejects.toThrow(/immutable|never reused|next of its series|move forward/);
      const first = (await fx.web.bills.list({ limit: 1 }))[0]!;
      expect(first.totalMinor).not.toBe(0);
      expect((await fx.web.bills.list()).length).toBe(9);
      expect(Number((await fx.db.driver.query('SELECT count(*) AS n FROM web_bill WHERE issued_by = ?', ['mallory']))[0]!.n)).toBe(0);
    });

    it('a revision gets a credit or a debit note with the exact differences, referring to the bill', async () => {
      const hh = 'hh02';
      const [p] = periodsOf(await fx.store.latestBilling({ household: hh }));
      const bill = (await fx.web.bills.list({ household: hh }))[0]!;
      const peak0 = BigInt(p!.bands.peak!);
      const off0 = BigInt(p!.bands.offpeak!);
      // Revision 1: 1234 Wh less peak energy -> a credit note.
      await fx.store.insertBilling({ kind: 'billing', key: hh, start: p!.start, end: p!.end, revision: 1, bands: { peak: Number(peak0) - 1234, offpeak: Number(off0) } });
      const r1 = await run();
      expect(r1.issued.length).toBe(1);
      const credit = r1.issued[0]!;
      expect(credit).toMatchObject({ kind: 'credit', number: `CN-${YEAR}-000001`, refersTo: { id: bill.id, number: bill.number }, revision: 1, periodStart: p!.start });
      const peakDiff = rhe((peak0 - 1234n) * 30_000n, 1_000_000n) - rhe(peak0 * 30_000n, 1_000_000n);
      expect(credit.lines).toEqual([expect.objectContaining({ kind: 'energy', band: 'peak', energyWh: -1234, priceMilliPerKwh: 30_000, amountMinor: Number(peakDiff) })]);
      const subtotal = (peak: bigint, off: bigint): bigint => rhe(peak * 30_000n, 1_000_000n) + rhe(off * 15_000n, 1_000_000n) + rhe(53_350n, 1000n);
      const total = (peak: bigint, off: bigint): bigint => subtotal(peak, off) + rhe(subtotal(peak, off) * 500n, 10_000n);
      expect(BigInt(credit.subtotalMinor)).toBe(peakDiff);
      expect(BigInt(credit.totalMinor)).toBe(total(peak0 - 1234n, off0) - total(peak0, off0));
      expect(credit.totalMinor).toBeLessThan(0);
      expect(bill.totalMinor + credit.totalMinor).toBe(priceBill([{ ...p!, bands: { peak: Number(peak0) - 1234, offpeak: Number(off0) } }], await fx.web.tariffs.versions('tou')).totalMinor);
      // The bill is untouched.
      expect(await fx.web.bills.byNumber(bill.number)).toEqual(bill);
      // Revision 2: 5000 Wh more off-peak than revision 1 -> a debit note against the same bill, from revision 1.
      await fx.store.insertBilling({ kind: 'billing', key: hh, start: p!.start, end: p!.end, revision: 2, bands: { peak: Number(peak0) - 1234, offpeak: Number(off0) + 5000 } });
      const debit = (await run()).issued[0]!;
      expect(debit).toMatchObject({ kind: 'debit', number: `DN-${YEAR}-000001`, refersTo: { number: bill.number }, revision: 2 });
      expect(debit.lines.map((l) => [l.kind === 'energy' ? l.band : l.kind, l.kind === 'energy' ? l.energyWh : null])).toEqual([['offpeak', 5000]]);
      expect(BigInt(debit.totalMinor)).toBe(total(peak0 - 1234n, off0 + 5000n) - total(peak0 - 1234n, off0));
      expect(bill.totalMinor + credit.totalMinor + debit.totalMinor).toBe(Number(total(peak0 - 1234n, off0 + 5000n)));
      // A revision that changes nothing billed needs no note.
      await fx.store.insertBilling({ kind: 'billing', key: hh, start: p!.start, end: p!.end, revision: 3, bands: { peak: Number(peak0) - 1234, offpeak: Number(off0) + 5000 } });
      expect(await run()).toMatchObject({ issued: [], unchanged: 1 });
    });

    it('numbering continues after a restart, and a failed issue leaves no gap', async () => {
      const reopened = kind === 'sqlite' ? openSqlite(fx.db.url) : openPostgres(PG_URL, { schema: fx.db.schema! });
      try {
        const web = await openWebDb(reopened);
        // A document the database refuses (a bill that refers to another bill) takes no number.
        const [anyBill] = await web.bills.list({ limit: 1 });
        const { id: _i, number: _n, issuedAtMs: _a, issuedBy: _b, ...base } = anyBill!;
        await expect(web.bills.issue({ ...base, periodStart: 1, revision: 0, refersTo: { id: anyBill!.id, number: anyBill!.number } }, 'billing', TZ)).rejects.toThrow();
        const [p] = periodsOf(await fx.store.latestBilling({ household: 'hh01' }));
        await fx.store.insertBilling({ kind: 'billing', key: 'hh01', start: p!.start, end: p!.end, revision: 1, bands: { peak: p!.bands.peak! - 10, offpeak: p!.bands.offpeak! } });
        await fx.store.insertBilling({ kind: 'billing', key: 'hh01', start: WEEK_START + 2 * DAY, end: WEEK_START + 3 * DAY, revision: 0, bands: { peak: 100, offpeak: 100 } });
        const r = await runBills(fx.store, web, { by: 'billing', nowMs: NOW, tz: TZ });
        expect(r.issued.map((d) => d.number).sort()).toEqual([`B-${YEAR}-000010`, `CN-${YEAR}-000002`]);
        expectGapFree(await web.bills.list());
      } finally {
        await reopened.close();
      }
    });

    it('two runs at once issue each document once', async () => {
      await fx.store.insertBilling({ kind: 'billing', key: 'hh03', start: WEEK_START + 2 * DAY, end: WEEK_START + 3 * DAY, revision: 0, bands: { peak: 200, offpeak: 300 } });
      const [a, b] = await Promise.all([run(), run()]);
      expect([...a.issued, ...b.issued].map((d) => d.number)).toEqual([`B-${YEAR}-000011`]);
      expectGapFree(await fx.web.bills.list());
    });

    it('a document commits with its audit entry, or not at all', async () => {
      await fx.store.insertBilling({ kind: 'billing', key: 'hh02', start: WEEK_START + 2 * DAY, end: WEEK_START + 3 * DAY, revision: 0, bands: { peak: 400, offpeak: 500 } });
      const audit = { userId: 3, ip: '10.0.0.5' };
      const brokenAudit = Object.assign(Object.create(fx.web.audit) as WebDb['audit'], { record: async () => Promise.reject(new Error('audit log unavailable')) });
      await expect(runBills(fx.store, { ...fx.web, audit: brokenAudit }, { by: 'billing', audit, nowMs: NOW, tz: TZ })).rejects.toThrow('audit log unavailable');
      expect(await fx.web.bills.list({ household: 'hh02', from: WEEK_START + 2 * DAY })).toEqual([]);
      const r = await runBills(fx.store, fx.web, { by: 'billing', audit, nowMs: NOW, tz: TZ });
      expect(r.issued.map((d) => d.number)).toEqual([`B-${YEAR}-000012`]); // the failed attempt used no number
      expect((await fx.web.audit.list({ action: 'bill.issue' }))[0]).toMatchObject({ target: `B-${YEAR}-000012`, userId: 3, username: 'billing', ip: '10.0.0.5', detail: { kind: 'bill', revision: 0 } });
      expect((await fx.web.audit.verify()).ok).toBe(true);
      expectGapFree(await fx.web.bills.list());
    });

    it('feed-in: a bill credits the energy fed in per band and records it; a revision of the export alone gets a note; a bill can be a credit', async () => {
      // A prosumer on its own tariff, billed alone so the other households' documents stay as they are.
      const solar = await fx.web.tariffs.create({ code: 'solar', name: 'Solar', currency: 'GBP', minorDigits: 2, tz: TZ, effectiveFrom: '2024-01-01', standingMilliPerDay: 53_350, vatBasisPoints: 500, bands: [{ band: 'peak', priceMilliPerKwh: 30_000, feedInMilliPerKwh: 9_000 }, { band: 'offpeak', priceMilliPerKwh: 15_000 }] }, 'admin');
      await fx.web.accounts.ensure(['hh-solar']);
      const account = (await fx.web.accounts.setTariff((await fx.web.accounts.byHousehold('hh-solar'))!.accountNumber, 'solar'))!;
      const p = { start: WEEK_START, end: WEEK_START + DAY };
      await fx.store.insertBilling({ kind: 'billing', key: 'hh-solar', ...p, revision: 0, bands: { peak: 2000, offpeak: 3000 }, exportBands: { peak: 12_345 } });
      const runSolar = () => runBills(fx.store, fx.web, { by: 'billing', nowMs: NOW, tz: TZ, accounts: [account] });
      const [bill] = (await runSolar()).issued;
      // peak 2 kWh x 30 p = 60; offpeak 3 kWh x 15 p = 45; fed in 12.345 kWh x 9 p = 111.105 -> -111; standing 53.35 -> 53;
      // subtotal 47; VAT 5 % = 2.35 -> 2; total 49
      expect(bill).toMatchObject({ kind: 'bill', exportBands: { peak: 12_345 }, tariffIds: [solar.id], subtotalMinor: 47, vatMinor: 2, totalMinor: 49 });
      expect(bill!.lines.find((l) => l.kind === 'feedin')).toMatchObject({ band: 'peak', energyWh: 12_345, feedInMilliPerKwh: 9_000, amountMinor: -111 });
      expect(await fx.web.bills.byNumber(bill!.number)).toEqual(bill);
      // Revision 1 changes only the export: 20 kWh more fed in -> a credit note of the feed-in line alone; the total goes negative.
      await fx.store.insertBilling({ kind: 'billing', key: 'hh-solar', ...p, revision: 1, bands: { peak: 2000, offpeak: 3000 }, exportBands: { peak: 32_345 } });
      const [note] = (await runSolar()).issued;
      expect(note).toMatchObject({ kind: 'credit', refersTo: { number: bill!.number }, revision: 1, exportBands: { peak: 32_345 } });
      expect(note!.lines).toEqual([expect.objectContaining({ kind: 'feedin', band: 'peak', energyWh: 20_000, amountMinor: -180 })]);
      const latest = priceBill([{ ...p, bands: { peak: 2000, offpeak: 3000 }, exportBands: { peak: 32_345 } }], [solar]);
      expect(latest.totalMinor).toBeLessThan(0); // 60 + 45 - 291 + 53 = -133, VAT -6.65 -> -7: -140
      expect(latest.totalMinor).toBe(-140);
      expect(bill!.totalMinor + note!.totalMinor).toBe(latest.totalMinor);
      // Revision 2 takes the export away again (a meter fault corrected): a debit note, and the sum is still exact.
      await fx.store.insertBilling({ kind: 'billing', key: 'hh-solar', ...p, revision: 2, bands: { peak: 2000, offpeak: 3000 } });
      const [debit] = (await runSolar()).issued;
      expect(debit).toMatchObject({ kind: 'debit', exportBands: {} });
      expect(debit!.lines).toEqual([expect.objectContaining({ kind: 'feedin', energyWh: -32_345, amountMinor: 291 })]);
      expect(bill!.totalMinor + note!.totalMinor + debit!.totalMinor).toBe(priceBill([{ ...p, bands: { peak: 2000, offpeak: 3000 } }], [solar]).totalMinor);
      expectGapFree(await fx.web.bills.list());
    });
  });
}

describe('noteAmounts', () => {
  it('is the exact difference of two priced periods, line by line', () => {
    const v = [{ id: 7, code: 't', name: 'T', currency: 'EUR', minorDigits: 2, tz: 'UTC', effectiveFrom: '2024-01-01', standingMilliPerDay: 20_000, vatBasisPoints: 2000, bands: [{ band: 'day', priceMilliPerKwh: 33_333 }, { band: 'night', priceMilliPerKwh: 11_111 }] }];
    const start = Date.UTC(2024, 5, 1) / 1000;
    const before = priceBill([{ start, end: start + 30 * DAY, bands: { day: 123_456, night: 65_432 } }], v);
    const after = priceBill([{ start, end: start + 30 * DAY, bands: { day: 120_001, night: 70_000 } }], v);
    const note = noteAmounts(before, after);
    expect(note.lines.map((l) => (l.kind === 'energy' ? [l.band, l.energyWh, l.amountMinor] : l.kind))).toEqual([
      ['day', 120_001 - 123_456, Number(rhe(120_001n * 33_333n, 1_000_000n) - rhe(123_456n * 33_333n, 1_000_000n))],
      ['night', 70_000 - 65_432, Number(rhe(70_000n * 11_111n, 1_000_000n) - rhe(65_432n * 11_111n, 1_000_000n))],
    ]);
    expect(before.totalMinor + note.totalMinor).toBe(after.totalMinor);
    expect(before.vatMinor + note.vatMinor).toBe(after.vatMinor);
    expect(noteAmounts(after, after)).toEqual({ lines: [], vat: [], subtotalMinor: 0, vatMinor: 0, totalMinor: 0 });
  });

  it('carries a feed-in line as the difference of the energy fed in, apart from the energy line of the same band', () => {
    const v = [{ id: 7, code: 't', name: 'T', currency: 'EUR', minorDigits: 2, tz: 'UTC', effectiveFrom: '2024-01-01', standingMilliPerDay: 0, vatBasisPoints: 900, bands: [{ band: 'day', priceMilliPerKwh: 33_333, feedInMilliPerKwh: 7_777 }] }];
    const start = Date.UTC(2024, 5, 1) / 1000;
    const before = priceBill([{ start, end: start + 30 * DAY, bands: { day: 100_000 }, exportBands: { day: 50_000 } }], v);
    const after = priceBill([{ start, end: start + 30 * DAY, bands: { day: 100_000 }, exportBands: { day: 450_001 } }], v);
    const note = noteAmounts(before, after);
    expect(note.lines).toEqual([expect.objectContaining({ kind: 'feedin', band: 'day', energyWh: 400_001, amountMinor: -Number(rhe(450_001n * 7_777n, 1_000_000n) - rhe(50_000n * 7_777n, 1_000_000n)) })]); // half to even is symmetric
    expect(before.totalMinor + note.totalMinor).toBe(after.totalMinor);
    expect(after.totalMinor).toBeLessThan(0);
  });
});

describe('issued bills over HTTP', () => {
  let fx: Fixture;
  let app: FastifyInstance;
  const auth: Record<string, { cookie: string; csrf: string }> = {};

  beforeAll(async () => {
    fx = await fixture('sqlite', 2);
    app = await appOf(fx);
    for (const who of ['analyst', 'billing', 'admin']) {
      const r = await app.inject({ method: 'POST', url: '/api/v1/session', payload: { username: who, password: PASSWORDS[who] } });
      auth[who] = { cookie: r.cookies.map((c) => `${c.name}=${c.value}`).join('; '), csrf: r.json().csrfToken };
    }
  }, 120_000);
  afterAll(async () => {
    await app?.close();
    await fx?.close();
  });
  const h = (who: string) => ({ cookie: auth[who]!.cookie, 'x-csrf-token': auth[who]!.csrf });

  it('only the billing role runs bills; the run and every document are audited', async () => {
    for (const who of ['analyst', 'admin']) {
      const r = await app.inject({ method: 'POST', url: '/api/v1/bills/run', headers: h(who), payload: {} });
      expect(r.statusCode).toBe(403);
    }
    expect(await fx.web.bills.list()).toEqual([]);
    const r = await app.inject({ method: 'POST', url: '/api/v1/bills/run', headers: h('billing'), payload: {} });
    expect(r.statusCode, r.body).toBe(200);
    const body = r.json() as { issued: { number: string; kind: string; account: string; totalMinor: number }[]; skipped: unknown[] };
    expect(body.issued.length).toBe(8);
    expect(body.skipped).toEqual([]);
    const issuedAudit = await fx.web.audit.list({ action: 'bill.issue' });
    expect(issuedAudit.map((e) => e.target).sort()).toEqual(body.issued.map((d) => d.number).sort());
    expect(issuedAudit.every((e) => e.username === 'billing' && e.outcome === 'ok')).toBe(true);
    expect((await fx.web.audit.list({ action: 'bill.run' }))[0]).toMatchObject({ username: 'billing', detail: { issued: 8, notes: 0, skipped: 0 } });
    // A revision -> a note, audited as such.
    const hh = 'hh01';
    const [p] = periodsOf(await fx.store.latestBilling({ household: hh }));
    await fx.store.insertBilling({ kind: 'billing', key: hh, start: p!.start, end: p!.end, revision: 1, bands: { peak: p!.bands.peak! + 777, offpeak: p!.bands.offpeak! } });
    const n = await app.inject({ method: 'POST', url: '/api/v1/bills/run', headers: h('billing'), payload: {} });
    const note = n.json().issued[0] as { number: string; kind: string; refersTo: string };
    expect(note).toMatchObject({ kind: 'debit', number: `DN-${YEAR}-000001` });
    expect((await fx.web.audit.list({ action: 'bill.note' }))[0]).toMatchObject({ target: note.number, detail: { refersTo: note.refersTo, revision: 1 } });
    expect((await fx.web.audit.verify()).ok).toBe(true);
  });

  it('the form runs bills too (CSRF-checked) and the bills page lists what was issued', async () => {
    const page = await app.inject({ url: '/bills?from=2024-06-03&to=2024-06-05', headers: { cookie: auth.billing!.cookie } });
    expect(page.statusCode).toBe(200);
    const token = /action="\/bills\/run"[^]*?name="_csrf" value="([^"]+)"/.exec(page.body)![1]!;
    for (const d of await fx.web.bills.list()) expect(page.body).toContain(`/bills/${d.number}`);
    const noToken = await app.inject({ method: 'POST', url: '/bills/run', headers: { cookie: auth.billing!.cookie, 'content-type': 'application/x-www-form-urlencoded' }, payload: '' });
    expect(noToken.statusCode).toBe(403);
    const ok = await app.inject({ method: 'POST', url: '/bills/run', headers: { cookie: auth.billing!.cookie, 'content-type': 'application/x-www-form-urlencoded' }, payload: `_csrf=${encodeURIComponent(token)}` });
    expect(ok.statusCode).toBe(303);
    expect(ok.headers.location).toBe('/bills?done=run');
    // The analyst sees no run button (and the admin cannot read bills at all).
    const analyst = await app.inject({ url: '/bills', headers: { cookie: auth.analyst!.cookie } });
    expect(analyst.statusCode).toBe(403);
  });

  it('exports a bill and a note as printable HTML, CSV and JSON with the same amounts', async () => {
    const docs = await fx.web.bills.list({ household: 'hh01' });
    const bill = docs.find((d) => d.kind === 'bill' && d.periodStart === WEEK_START)!;
    const note = docs.find((d) => d.kind === 'debit')!;
    for (const d of [bill, note]) {
      const page = await app.inject({ url: `/bills/${d.number}`, headers: { cookie: auth.billing!.cookie } });
      expect(page.statusCode).toBe(200);
      expect(page.headers['content-type']).toMatch(/text\/html/);
      expect(page.body).toContain(`data-minor="${d.totalMinor}"`);
      expect(page.body).toContain(`data-testid="document-number">${d.number}<`);
      expect(page.body).toContain(`version ${d.tariffIds[0]}`);
      expect(page.body).toContain('data-action="print"');
      const csv = await app.inject({ url: `/api/v1/exports/bills.csv?number=${d.number}`, headers: { cookie: auth.billing!.cookie } });
      expect(csv.headers['content-type']).toMatch(/^text\/csv/);
      const rows = csv.body.trimEnd().split('\n');
      expect(rows[0]).toBe(DOCUMENTS_CSV_HEADER);
      const cells = rows.slice(1).map((r) => r.split(','));
      const items = cells.filter((c) => c[9] === 'energy' || c[9] === 'feedin' || c[9] === 'standing' || c[9] === 'vat');
      const totalRow = cells.find((c) => c[9] === 'total')!;
      expect(Number(totalRow[16])).toBe(d.totalMinor);
      expect(items.reduce((a, c) => a + BigInt(c[16]!), 0n)).toBe(BigInt(d.totalMinor)); // lines + VAT add up to the total
      expect(cells.every((c) => c[0] === d.number && c[3] === d.accountNumber)).toBe(true);
      const json = await app.inject({ url: `/api/v1/bills/${d.number}`, headers: { cookie: auth.billing!.cookie } });
      expect(json.json()).toMatchObject({ number: d.number, kind: d.kind, totalMinor: d.totalMinor, refersTo: d.refersTo?.number ?? null, tariffVersions: d.tariffIds });
    }
    const notePage = await app.inject({ url: `/bills/${note.number}`, headers: { cookie: auth.billing!.cookie } });
    expect(notePage.body).toContain(`data-testid="document-refers">${bill.number}<`);
    expect(notePage.body).toContain('Debit note');
    // The account page lists its documents.
    const account = await app.inject({ url: `/accounts/${bill.accountNumber}`, headers: { cookie: auth.billing!.cookie } });
    expect(account.body).toContain(`/bills/${bill.number}`);
    expect(account.body).toContain(`/bills/${note.number}`);
    // Listing and exports are audited; unknown numbers are 404, malformed ones 400.
    expect((await fx.web.audit.list({ action: 'export.bills' })).map((e) => e.target)).toEqual([note.number, bill.number]);
    expect((await fx.web.audit.list({ action: 'view.bill', target: bill.number })).length).toBeGreaterThanOrEqual(2);
    expect((await app.inject({ url: `/api/v1/bills/B-${YEAR}-999999`, headers: { cookie: auth.billing!.cookie } })).statusCode).toBe(404);
    expect((await app.inject({ url: '/api/v1/bills/B-1', headers: { cookie: auth.billing!.cookie } })).statusCode).toBe(404); // a malformed number in a path is an unknown document (issue 20 item 7)
    const list = await app.inject({ url: `/api/v1/bills?account=${bill.accountNumber}`, headers: { cookie: auth.billing!.cookie } });
    expect(list.json().map((d: { number: string }) => d.number)).toEqual(docs.map((d) => d.number));
  });
});
