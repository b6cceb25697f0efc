/**
 * Issued bills: what the utility actually sends. At the close of a billing period (its billing aggregate is
 * stored and the period has ended) a bill run freezes one bill per account and period: a number from a
 * gap-free series that is never reused, the issue date, the tariff versions used, the lines per band and the
 * totals in integer minor units. A document is never edited (the database refuses UPDATE and DELETE); a later
 * revision of the period's aggregate is settled by a credit or debit note that refers to the bill and carries
 * the difference per line, per VAT rate and in total, priced under the bill's own tariff versions, so the bill
 * plus its notes always add up to the latest revision priced from scratch.
 *
 * Numbers: `B-2026-000001` (bills), `CN-2026-000001` (credit notes), `DN-2026-000001` (debit notes); one
 * series per kind and year of issue (in the display time zone). The series counter moves in the same
 * transaction as the insert, so a failed issue leaves no gap and a restart continues where it stopped.
 * @module
 */
import { DateTime } from 'luxon';
import type { Driver, Param, Querier } from '../store/driver.js';
import type { Store } from '../store/types.js';
import type { Account } from './accounts.js';
import { BillingError, priceBill, type Bill, type BillLine } from '../../lib/billing.js';
import { periodsOf, tariffCodeOf, type StoredPeriod } from './bills.js';
import type { WebDb } from './db.js';
import { int, intOrNull, text } from './rows.js';
import type { StoredTariff } from './tariffs.js';
import { isoZ } from './time.js';

/** What a document is. */
export type DocumentKind = 'bill' | 'credit' | 'debit';

/** Number prefixes per kind. */
export const NUMBER_PREFIX: Record<DocumentKind, string> = { bill: 'B', credit: 'CN', debit: 'DN' };

/** The shape of every document number. */
export const DOCUMENT_NUMBER = /^(B|CN|DN)-\d{4}-\d{6}$/;

/** The money part of a document: a priced bill, or a note's differences (signed: a credit is negative). */
export interface Amounts {
  lines: BillLine[];
  vat: Bill['vat'];
  subtotalMinor: number;
  vatMinor: number;
  totalMinor: number;
}

/** An issued bill or note. */
export interface IssuedDocument extends Amounts {
  id: number;
  number: string;
  kind: DocumentKind;
  /** The bill a note settles (null for a bill). */
  refersTo: { id: number; number: string } | null;
  accountNumber: string;
  household: string;
  periodStart: number;
  periodEnd: number;
  /** The revision of the billing aggregate this document brings the period to. */
  revision: number;
  /** Energy imported per band (Wh) of that revision. */
  bands: Record<string, number>;
  /** Energy fed in per band (Wh) of that revision: only bands with some (empty for documents issued before feed-in). */
  exportBands: Record<string, number>;
  tariffCode: string;
  /** The tariff versions (ids) the amounts are priced under. */
  tariffIds: number[];
  currency: string;
  minorDigits: number;
  issuedAtMs: number;
  issuedBy: string;
}

/** What {@link IssuedBills.issue} stores (the number and date are given by the repository). */
export type NewDocument = Omit<IssuedDocument, 'id' | 'number' | 'issuedAtMs' | 'issuedBy'>;

const safe = (v: bigint, what: string): number => {
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) throw new BillingError(`${what} is out of range`);
  return Number(v);
};
const lineKey = (l: BillLine): string => `${l.kind}\u0000${l.tariffId}\u0000${l.kind === 'standing' ? '' : l.band}`;
const whOf = (l: BillLine | undefined, kind: 'energy' | 'feedin'): number => (l && l.kind === kind ? l.energyWh : 0);

/**
 * The note that takes a priced period from `before` to `after` (both priced under the same tariff versions):
 * the change of every line (energy or fed-in Wh, days and amount; rates unchanged), of each VAT rate and of the totals.
 * Lines that do not change are left out. Exact: `before.totalMinor + note.totalMinor === after.totalMinor`.
 * @example
 * ```ts
 * const note = noteAmounts(priceBill([billed], versions), priceBill([revised], versions));
 * note.totalMinor; // -137: a credit of £1.37
 * ```
 */
export function noteAmounts(before: Amounts, after: Amounts): Amounts {
  const old = new Map(before.lines.map((l) => [lineKey(l), l]));
  const keys = [...new Set([...after.lines.map(lineKey), ...before.lines.map(lineKey)])];
  const lines: BillLine[] = [];
  for (const k of keys) {
    const a = after.lines.find((l) => lineKey(l) === k);
    const b = old.get(k);
    const base = (a ?? b)!;
    const amount = safe(BigInt(a?.amountMinor ?? 0) - BigInt(b?.amountMinor ?? 0), 'a line difference');
    if (base.kind === 'energy' || base.kind === 'feedin') {
      const wh = safe(BigInt(whOf(a, base.kind)) - BigInt(whOf(b, base.kind)), 'an energy difference');
      if (wh !== 0 || amount !== 0) lines.push({ ...base, energyWh: wh, amountMinor: amount });
    } else {
      const days = (a?.kind === 'standing' ? a.days : 0) - (b?.kind === 'standing' ? b.days : 0);
      if (days !== 0 || amount !== 0) lines.push({ ...base, days, amountMinor: amount });
    }
  }
  const rates = [...new Set([...before.vat, ...after.vat].map((v) => v.basisPoints))].sort((x, y) => x - y);
  const vat = rates
    .map((bp) => {
      const a = after.vat.find((v) => v.basisPoints === bp);
      const b = before.vat.find((v) => v.basisPoints === bp);
      return {
        basisPoints: bp,
        baseMinor: safe(BigInt(a?.baseMinor ?? 0) - BigInt(b?.baseMinor ?? 0), 'a VAT base difference'),
        amountMinor: safe(BigInt(a?.amountMinor ?? 0) - BigInt(b?.amountMinor ?? 0), 'a VAT difference'),
      };
    })
    .filter((v) => v.baseMinor !== 0 || v.amountMinor !== 0);
  return {
    lines,
    vat,
    subtotalMinor: safe(BigInt(after.subtotalMinor) - BigInt(before.subtotalMinor), 'the subtotal difference'),
    vatMinor: safe(BigInt(after.vatMinor) - BigInt(before.vatMinor), 'the VAT difference'),
    totalMinor: safe(BigInt(after.totalMinor) - BigInt(before.totalMinor), 'the total difference'),
  };
}

const COLS = 'b.*, r.number AS refers_number';
const row = (r: Record<string, unknown>): IssuedDocument => {
  const refersTo = intOrNull(r.refers_to, 'refers_to');
  return {
    id: int(r.id, 'bill id'),
    number: text(r.number, 'number'),
    kind: text(r.kind, 'kind') as DocumentKind,
    refersTo: refersTo === null ? null : { id: refersTo, number: text(r.refers_number, 'referred number') },
    accountNumber: text(r.account_number, 'account number'),
    household: text(r.household, 'household'),
    periodStart: int(r.period_start, 'period start'),
    periodEnd: int(r.period_end, 'period end'),
    revision: int(r.revision, 'revision'),
    bands: JSON.parse(text(r.bands_json, 'bands')) as Record<string, number>,
    exportBands: r.export_bands_json == null ? {} : (JSON.parse(text(r.export_bands_json, 'export bands')) as Record<string, number>),
    tariffCode: text(r.tariff_code, 'tariff code'),
    tariffIds: JSON.parse(text(r.tariff_ids, 'tariff ids')) as number[],
    currency: text(r.currency, 'currency'),
    minorDigits: int(r.minor_digits, 'minor digits'),
    lines: JSON.parse(text(r.lines_json, 'lines')) as BillLine[],
    vat: JSON.parse(text(r.vat_json, 'vat')) as Bill['vat'],
    subtotalMinor: int(r.subtotal_minor, 'subtotal'),
    vatMinor: int(r.vat_minor, 'vat'),
    totalMinor: int(r.total_minor, 'total'),
    issuedAtMs: int(r.issued_at_ms, 'issued at'),
    issuedBy: text(r.issued_by, 'issued by'),
  };
};

/** Filters of {@link IssuedBills.list}: documents whose period starts in [from, to), oldest period first. */
export interface IssuedQuery {
  household?: string;
  from?: number;
  to?: number;
  limit?: number;
}

/**
 * The repository of issued bills and notes: insert-only.
 * @example
 * ```ts
 * const bills = new IssuedBills(driver);
 * const doc = await bills.issue(newBill, 'billing', 'Europe/London');
 * doc?.number; // 'B-2026-000001'
 * ```
 */
export class IssuedBills {
  constructor(
    private readonly db: Driver,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Numbers and stores a document. Returns null, storing nothing, when the period's documents are not what the
   * caller computed from: a bill when the period already has one, a note when the period's latest document is
   * not at revision `after` (two runs at once issue each document once, and never a note from a stale base).
   * Its series is `<prefix>-<year of issue in tz>`. `onIssued` runs in the same transaction (the audit entry),
   * so a document is never stored without it.
   */
  async issue(d: NewDocument, issuedBy: string, tz = 'UTC', after?: number, onIssued?: (tx: Querier, doc: IssuedDocument) => Promise<unknown>): Promise<IssuedDocument | null> {
    const at = this.now();
    const series = `${NUMBER_PREFIX[d.kind]}-${DateTime.fromMillis(at, { zone: tz }).toFormat('yyyy')}`;
    return this.db.transaction(async (tx) => {
      await tx.lock('web_bill');
      const [state] = await tx.query('SELECT count(*) AS n, max(revision) AS r FROM web_bill WHERE household = ? AND period_start = ?', [d.household, d.periodStart]);
      const n = Number(state?.n ?? 0);
      if (d.kind === 'bill' ? n > 0 : n === 0 || Number(state?.r) !== after) return null;
      const [cur] = await tx.query('SELECT last_seq FROM web_bill_series WHERE series = ?', [series]);
      const seq = cur ? int(cur.last_seq, 'last_seq') + 1 : 1;
      if (cur) await tx.run('UPDATE web_bill_series SET last_seq = ? WHERE series = ?', [seq, series]);
      else await tx.run('INSERT INTO web_bill_series (series, last_seq) VALUES (?, ?)', [series, seq]);
      const number = `${series}-${String(seq).padStart(6, '0')}`;
      const [r] = await tx.query(
        `INSERT INTO web_bill (number, kind, series, seq, refers_to, account_number, household, period_start, period_end, revision, tariff_code, tariff_ids,
           currency, minor_digits, bands_json, export_bands_json, lines_json, vat_json, subtotal_minor, vat_minor, total_minor, issued_at_ms, issued_by)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
        [
          number,
          d.kind,
          series,
          seq,
          d.refersTo?.id ?? null,
          d.accountNumber,
          d.household,
          d.periodStart,
          d.periodEnd,
          d.revision,
          d.tariffCode,
          JSON.stringify(d.tariffIds),
          d.currency,
          d.minorDigits,
          JSON.stringify(d.bands),
          JSON.stringify(d.exportBands),
          JSON.stringify(d.lines),
          JSON.stringify(d.vat),
          d.subtotalMinor,
          d.vatMinor,
          d.totalMinor,
          at,
          issuedBy,
        ],
      );
      const [stored] = await tx.query(`SELECT ${COLS} FROM web_bill b LEFT JOIN web_bill r ON r.id = b.refers_to WHERE b.id = ?`, [int(r?.id, 'bill id')]);
      const doc = row(stored!);
      await onIssued?.(tx, doc);
      return doc;
    });
  }

  /** One document by its number. */
  async byNumber(number: string): Promise<IssuedDocument | null> {
    const [r] = await this.db.query(`SELECT ${COLS} FROM web_bill b LEFT JOIN web_bill r ON r.id = b.refers_to WHERE b.number = ?`, [number]);
    return r ? row(r) : null;
  }

  /** Documents matching `q`: by period start, then in order of issue. */
  async list(q: IssuedQuery = {}): Promise<IssuedDocument[]> {
    const where: string[] = [];
    const params: Param[] = [];
    if (q.household !== undefined) (where.push('b.household = ?'), params.push(q.household));
    if (q.from !== undefined) (where.push('b.period_start >= ?'), params.push(q.from));
    if (q.to !== undefined) (where.push('b.period_start < ?'), params.push(q.to));
    const limit = Math.min(Math.max(q.limit ?? 1000, 1), 10_000);
    const rows = await this.db.query(
      `SELECT ${COLS} FROM web_bill b LEFT JOIN web_bill r ON r.id = b.refers_to ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY b.period_start, b.household, b.id LIMIT ?`,
      [...params, limit],
    );
    return rows.map(row);
  }
}

/** What a bill run did. */
export interface BillRun {
  issued: IssuedDocument[];
  /** Periods that could not be billed, and why (no tariff, a band without a price...). */
  skipped: { account: string; start: number; end: number; reason: string }[];
  /** Periods whose newer revision changes nothing that is billed (no note needed). */
  unchanged: number;
}

/** Options of {@link runBills}. */
export interface BillRunOptions {
  /** Who runs it (recorded on each document). */
  by: string;
  /** Who runs it, for the audit entry (`bill.issue` / `bill.note`) each document commits with. */
  audit?: { userId: number | null; ip: string };
  /** Now (ms): only periods that have ended are billed. */
  nowMs: number;
  /** Zone of the year in document numbers. */
  tz: string;
  /** Only these accounts (default: all). */
  accounts?: Account[];
}

/**
 * Freezes a bill for every ended period of every account that has none, and a credit or debit note for every
 * billed period whose aggregate has a newer revision than its last document.
 * @example
 * ```ts
 * const run = await runBills(store, web, { by: 'billing', audit: { userId: 3, ip: '10.0.0.5' }, nowMs: Date.now(), tz: 'Europe/London' });
 * run.issued.map((d) => d.number); // ['B-2026-000001', ...]
 * ```
 */
export async function runBills(store: Store, web: WebDb, opts: BillRunOptions): Promise<BillRun> {
  const out: BillRun = { issued: [], skipped: [], unchanged: 0 };
  const versionsById = new Map<number, StoredTariff>((await web.tariffs.list()).map((v) => [v.id, v]));
  for (const account of opts.accounts ?? (await web.accounts.list())) {
    const periods = periodsOf(await store.latestBilling({ household: account.household })).filter((p) => p.end * 1000 <= opts.nowMs);
    if (periods.length === 0) continue;
    const docs = await web.bills.list({ household: account.household, from: periods[0]!.start, to: periods[periods.length - 1]!.start + 1, limit: 10_000 });
    for (const p of periods) {
      const mine = docs.filter((d) => d.periodStart === p.start);
      try {
        const doc = mine.length === 0 ? await freeze(web, account, p) : noteFor(mine, p, versionsById);
        if (doc === 'unchanged') out.unchanged++;
        else if (doc) {
          const audit = opts.audit;
          const record = audit
            ? (tx: Querier, d: IssuedDocument) =>
                web.audit.record(
                  {
                    userId: audit.userId,
                    username: opts.by,
                    action: d.kind === 'bill' ? 'bill.issue' : 'bill.note',
                    target: d.number,
                    outcome: 'ok',
                    ip: audit.ip,
                    detail: { kind: d.kind, account: d.accountNumber, period: isoZ(d.periodStart), revision: d.revision, refersTo: d.refersTo?.number ?? null },
                  },
                  tx,
                )
            : undefined;
          const issued = await web.bills.issue(doc, opts.by, opts.tz, mine.length ? Math.max(...mine.map((d) => d.revision)) : undefined, record);
          if (issued) out.issued.push(issued);
        }
      } catch (e) {
        if (!(e instanceof BillingError)) throw e;
        out.skipped.push({ account: account.accountNumber, start: p.start, end: p.end, reason: e.message });
      }
    }
  }
  return out;
}

/** The bill of a period not yet billed, under the account's tariff. */
async function freeze(web: WebDb, account: Account, p: StoredPeriod): Promise<NewDocument> {
  const code = await tariffCodeOf(web, account);
  const versions = await web.tariffs.versions(code);
  if (versions.length === 0) throw new BillingError(`tariff "${code}" has no versions`);
  const bill = priceBill([p], versions);
  return {
    kind: 'bill',
    refersTo: null,
    accountNumber: account.accountNumber,
    household: account.household,
    periodStart: p.start,
    periodEnd: p.end,
    revision: p.revision,
    bands: p.bands,
    exportBands: p.exportBands ?? {},
    tariffCode: code,
    tariffIds: [...new Set(bill.lines.map((l) => l.tariffId))],
    currency: bill.currency,
    minorDigits: bill.minorDigits,
    lines: bill.lines,
    vat: bill.vat,
    subtotalMinor: bill.subtotalMinor,
    vatMinor: bill.vatMinor,
    totalMinor: bill.totalMinor,
  };
}

/** The note a newer revision of a billed period calls for, or null when the documents are up to date. */
function noteFor(docs: IssuedDocument[], p: StoredPeriod, versionsById: Map<number, StoredTariff>): NewDocument | 'unchanged' | null {
  const bill = docs.find((d) => d.kind === 'bill')!;
  const last = docs.reduce((a, d) => (d.revision > a.revision ? d : a));
  if (p.revision <= last.revision) return null;
  const versions = bill.tariffIds.map((id) => {
    const v = versionsById.get(id);
    if (!v) throw new BillingError(`tariff version ${id} of bill ${bill.number} is gone`);
    return v;
  });
  const before = priceBill([{ start: p.start, end: p.end, bands: last.bands, exportBands: last.exportBands }], versions);
  const after = priceBill([p], versions);
  const note = noteAmounts(before, after);
  if (note.lines.length === 0 && note.totalMinor === 0) return 'unchanged';
  return {
    ...note,
    kind: note.totalMinor < 0 ? 'credit' : 'debit',
    refersTo: { id: bill.id, number: bill.number },
    accountNumber: bill.accountNumber,
    household: bill.household,
    periodStart: p.start,
    periodEnd: p.end,
    revision: p.revision,
    bands: p.bands,
    exportBands: p.exportBands ?? {},
    tariffCode: bill.tariffCode,
    tariffIds: bill.tariffIds,
    currency: bill.currency,
    minorDigits: bill.minorDigits,
  };
}

/** Columns of the issued-documents CSV: one row per line item, per VAT rate, and a total row per document. */
export const DOCUMENTS_CSV_HEADER =
  'number,kind,refers_to,account,period_start,period_end,revision,issued_at,currency,item,tariff_id,band,energy_wh,rate_milli,days,vat_basis_points,amount_minor';

/**
 * The CSV rows (without the header) of one document; amounts in integer minor units, energy in Wh, rates in
 * thousandths of a minor unit per kWh (energy, feed-in) or per day (standing charge). A feed-in row has item
 * `feedin`, the Wh fed in, the feed-in rate and a negative amount.
 * @example
 * ```ts
 * documentCsvRows(doc).at(-1); // ['B-2026-000001', 'bill', '', 'SM-…', …, 'total', …, '1234']
 * ```
 */
export function documentCsvRows(d: IssuedDocument): (string | number)[][] {
  const head = [d.number, d.kind, d.refersTo?.number ?? '', d.accountNumber, isoZ(d.periodStart), isoZ(d.periodEnd), d.revision, isoZ(Math.floor(d.issuedAtMs / 1000)), d.currency];
  return [
    ...d.lines.map((l) =>
      l.kind === 'energy'
        ? [...head, 'energy', l.tariffId, l.band, l.energyWh, l.priceMilliPerKwh, '', l.vatBasisPoints, l.amountMinor]
        : l.kind === 'feedin'
          ? [...head, 'feedin', l.tariffId, l.band, l.energyWh, l.feedInMilliPerKwh, '', l.vatBasisPoints, l.amountMinor]
          : [...head, 'standing', l.tariffId, '', '', l.standingMilliPerDay, l.days, l.vatBasisPoints, l.amountMinor],
    ),
    ...d.vat.map((v) => [...head, 'vat', '', '', '', '', '', v.basisPoints, v.amountMinor]),
    [...head, 'total', '', '', '', '', '', '', d.totalMinor],
  ];
}
