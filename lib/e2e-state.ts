/**
 * The state file of a blind aggregator of the end-to-end mode (the PES's `pes --e2e --state`, the guardian's
 * `guardian --state`): SQLite (better-sqlite3), WAL, file 0600 (lib/private-file.ts), one transaction per
 * uplink committed BEFORE the uplink is acknowledged (lib/durable-subscriber.ts), as the classic PES's
 * (pes/store.ts).
 *
 * What is in it, and why none of it is a reading:
 * - `windows`: per open or retained window (lib/e2e-windows.ts) its numerator and denominator, products of the
 *   meters' Paillier snapshot ciphertexts (no one of the two parties can decrypt them alone: docs/paillier.md;
 *   the products are never re-randomised since the PES's and the guardian's partials must be of the same
 *   ciphertext), its term count, the ids of the meters that contributed and changed it, revision, released
 *   membership and status;
 * - `meters`: per meter its anti-replay state (highest invocation counter and a 4096-bit bitmap below it) and
 *   its last snapshot (time and Paillier ciphertext) and the earlier ones a snapshot arriving out of order may
 *   still fall between (lib/e2e-windows.ts);
 * - `outbox`: sealed messages to the MDMS (the PES's releases, the guardian's partials) committed with the
 *   uplink that produced them and deleted once the broker acknowledged their publish; after a crash they are
 *   published again (the MDMS stores by window and revision: a second copy is a duplicate);
 * - `meta`: format, role (`pes` or `guardian`), Paillier key id, the settings that shape windows, watermark and
 *   counters.
 *
 * Only what changed is written per uplink ({@link BlindWindows.checkpoint}: a few windows, the meters of the
 * uplink), and evicted windows are deleted. `synchronous = FULL` by default: the PUBACK follows the commit, so
 * only FULL makes it mean "durable" across a power loss (NORMAL survives a process crash; for bulk replays).
 * @module
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { cborDecode, cborEncode } from '../protocol/cbor.js';
import { fromBytes, toBytes } from '../protocol/paillier/arith.js';
import { formatBillingPeriod } from './billing-period.js';
import type { BlindCheckpoint, BlindCounters, BlindMeterRecord, BlindSettings, BlindState, BlindWindowRecord } from './e2e-windows.js';
import { privateFile } from './private-file.js';

/** The state file's format. */
export const E2E_STATE_FORMAT = 'e2e-2';

/** Who keeps the file: the two blind aggregators must never share (or swap) a state file. */
export type E2eRole = 'pes' | 'guardian';

/** Options of {@link E2eStateStore.open}. */
export interface E2eStateOptions {
  role: E2eRole;
  /** Paillier key id (`PublicKey.keyId`): the ciphertexts are only valid under the key that made them. */
  paillierKeyId: string;
  /** Settings that shape windows (interval, billing period, zone, tariff): must not change under a state file. */
  config: Record<string, unknown>;
  synchronous?: 'FULL' | 'NORMAL';
}

/** A sealed message waiting for its broker acknowledgement. */
export interface E2eOutMessage {
  id: number;
  topic: string;
  payload: Buffer;
}

/**
 * Raised when a file is not a usable state file for these keys, role and settings (corrupt, another program's,
 * the classic PES's, the other party's, another Paillier key, other window settings).
 * @example
 * ```ts
 * try { E2eStateStore.open(file, opts); } catch (e) { if (e instanceof E2eStateError) console.error(e.message); }
 * ```
 */
export class E2eStateError extends Error {
  override name = 'E2eStateError';
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS windows (
  kind TEXT NOT NULL, key TEXT NOT NULL, start INTEGER NOT NULL, body BLOB NOT NULL,
  PRIMARY KEY (kind, key, start)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meters (meter TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL);
`;

const TABLES = ['meta', 'windows', 'meters', 'outbox'];

/**
 * The settings a blind aggregator's state file is bound to (what shapes its windows; k, lateness and the
 * retention may change between runs, as for the classic PES).
 * @example
 * ```ts
 * E2eStateStore.open(file, { role: 'pes', paillierKeyId: pub.keyId, config: blindStateConfig(settings) });
 * ```
 */
export function blindStateConfig(s: BlindSettings): Record<string, unknown> {
  return { intervalS: s.intervalS, billing: formatBillingPeriod(s.billing), tz: s.tz, tariff: s.tariff, ...(s.dpEpsilon !== undefined ? { dpEpsilon: s.dpEpsilon } : {}) };
}

function fingerprint(x: unknown): string {
  return createHash('sha256').update(JSON.stringify(x)).digest('hex');
}

function encodeWindow(w: BlindWindowRecord): Buffer {
  const spans = (list: { meter: string; from: number; to: number }[]) => list.map((sp) => [sp.meter, sp.from, sp.to]);
  const pending = w.pending ? [w.pending.revision, spans(w.pending.spans), toBytes(w.pending.ciphertext)] : null;
  const parts = w.parts ? w.parts.map(([id, num, den]) => [id, toBytes(num), toBytes(den)]) : null;
  const answer = w.answer ? [spans(w.answer.spans), toBytes(w.answer.ciphertext)] : null;
  return cborEncode([w.end, toBytes(w.num), toBytes(w.den), w.terms, w.meters, w.changed, w.revision, w.released, w.closed, w.suppressed, w.spans, pending, parts, answer]);
}

function decodeWindow(kind: string, key: string, start: number, body: Buffer): BlindWindowRecord {
  const a = cborDecode(body) as unknown[];
  if (!Array.isArray(a) || a.length !== 14 || (kind !== 'neighbourhood' && kind !== 'billing')) throw new TypeError('malformed window row');
  type Spans = [string, number, number][];
  type Row = [number, Uint8Array, Uint8Array, number, string[], string[], number, string[] | null, boolean, boolean, [string, [number, number][]][], [number, Spans, Uint8Array] | null, [string, Uint8Array, Uint8Array][] | null, [Spans, Uint8Array] | null];
  const [end, num, den, terms, meters, changed, revision, released, closed, suppressed, spans, p, parts, answer] = a as Row;
  if (!Array.isArray(spans)) throw new TypeError('malformed window row');
  const spanList = (l: Spans) => l.map(([meter, from, to]) => ({ meter, from, to }));
  const pending = p ? { kind: kind as 'neighbourhood' | 'billing', key, start, end, revision: p[0], spans: spanList(p[1]), ciphertext: fromBytes(p[2]) } : null;
  return {
    kind, key, start, end, num: fromBytes(num), den: fromBytes(den), terms, meters, changed, revision, released, closed, suppressed, spans, pending,
    parts: parts ? parts.map(([id, pn, pd]): [string, bigint, bigint] => [id, fromBytes(pn), fromBytes(pd)]) : null,
    answer: answer ? { spans: spanList(answer[0]), ciphertext: fromBytes(answer[1]) } : null,
  };
}

function encodeMeter(m: BlindMeterRecord): Buffer {
  const snap = (x: { at: number; c: bigint; noisy?: bigint }) => [x.at, toBytes(x.c), ...(x.noisy !== undefined ? [toBytes(x.noisy)] : [])];
  const tail = m.pruned ? [(m.earlier ?? []).map(snap), true] : m.earlier?.length ? [m.earlier.map(snap)] : [];
  return cborEncode([m.highest, m.seen, m.last ? snap(m.last) : null, ...tail]);
}

function decodeMeter(body: Buffer): BlindMeterRecord {
  const a = cborDecode(body) as unknown[];
  if (!Array.isArray(a) || a.length < 3 || a.length > 5) throw new TypeError('malformed meter row');
  type Snap = [number, Uint8Array, Uint8Array?];
  const [highest, seen, last, earlier, pruned] = a as [number, Uint8Array, Snap | null, Snap[] | undefined, boolean | undefined];
  const snap = (x: Snap) => ({ at: x[0], c: fromBytes(x[1]), ...(x[2] ? { noisy: fromBytes(x[2]) } : {}) });
  return { highest, seen: Uint8Array.from(seen), last: last ? snap(last) : null, ...(earlier?.length ? { earlier: earlier.map(snap) } : {}), ...(pruned === true ? { pruned: true } : {}) };
}

/**
 * @example
 * ```ts
 * const store = E2eStateStore.open('guardian-state.sqlite', { role: 'guardian', paillierKeyId: pub.keyId, config });
 * windows.restore(store.load());
 * const out = store.commit(windows.checkpoint(), sealed, confirmedIds); // publish `out` only now
 * ```
 */
export class E2eStateStore {
  private readonly stmts;

  private constructor(
    private readonly db: Database.Database,
    private readonly file: string,
  ) {
    this.stmts = {
      putWindow: db.prepare('INSERT OR REPLACE INTO windows (kind, key, start, body) VALUES (?, ?, ?, ?)'),
      delWindow: db.prepare('DELETE FROM windows WHERE kind = ? AND key = ? AND start = ?'),
      putMeter: db.prepare('INSERT OR REPLACE INTO meters (meter, body) VALUES (?, ?)'),
      putOut: db.prepare('INSERT INTO outbox (topic, payload) VALUES (?, ?)'),
      delOut: db.prepare('DELETE FROM outbox WHERE id = ?'),
      putMeta: db.prepare('INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)'),
    };
  }

  /**
   * Opens (or creates) a state file; throws {@link E2eStateError} if it is corrupt or belongs to another role,
   * key, settings or program. `':memory:'` keeps the state in memory (same code path, nothing survives).
   */
  static open(file: string, opts: E2eStateOptions): E2eStateStore {
    let db: Database.Database;
    try {
      privateFile(file);
      db = new Database(file);
    } catch (e) {
      throw new E2eStateError(`cannot open the ${opts.role}'s end-to-end state file ${file}: ${(e as Error).message}`);
    }
    try {
      let tables: string[];
      try {
        db.pragma('journal_mode = WAL');
        tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all() as { name: string }[]).map((r) => r.name);
      } catch (e) {
        throw new E2eStateError(`${file} is not a state file (${(e as Error).message}); use a new --state file`);
      }
      const get = (k: string) => (tables.includes('meta') ? (db.prepare('SELECT v FROM meta WHERE k = ?').get(k) as { v: unknown } | undefined)?.v : undefined);
      let format: unknown;
      try {
        format = get('format');
      } catch {
        format = undefined;
      }
      if (tables.length > 0 && format !== E2E_STATE_FORMAT) {
        const what = format === undefined ? 'another program\'s database' : /^e2e-/.test(String(format)) ? `an older end-to-end state format (${String(format)}, not ${E2E_STATE_FORMAT}: docs/operations.md §1b)` : `state format ${String(format)} (not ${E2E_STATE_FORMAT}; a classic PES state?)`;
        throw new E2eStateError(`${file} is ${what}, not an end-to-end state file; use a new --state file`);
      }
      if (tables.some((t) => !TABLES.includes(t))) throw new E2eStateError(`${file} has tables an end-to-end state file does not have (${tables.join(', ')}); use a new --state file`);
      db.pragma(`synchronous = ${opts.synchronous === 'NORMAL' ? 'NORMAL' : 'FULL'}`);
      db.exec(SCHEMA);
      const config = fingerprint(opts.config);
      if (format === undefined) {
        const put = db.prepare('INSERT INTO meta (k, v) VALUES (?, ?)');
        db.transaction(() => {
          put.run('format', E2E_STATE_FORMAT);
          put.run('role', opts.role);
          put.run('paillier', opts.paillierKeyId);
          put.run('config', config);
          put.run('configText', JSON.stringify(opts.config));
        })();
      } else {
        const role = String(get('role'));
        if (role !== opts.role) throw new E2eStateError(`${file} is the ${role}'s state file, not the ${opts.role}'s; each party keeps its own`);
        if (String(get('paillier')) !== opts.paillierKeyId) throw new E2eStateError(`${file} was written with another Paillier key; use a new --state file`);
        if (String(get('config')) !== config) throw new E2eStateError(`${file} was written with other window settings (${String(get('configText'))}); use a new --state file or the same settings`);
      }
      return new E2eStateStore(db, file);
    } catch (e) {
      db.close();
      throw e;
    }
  }

  /** Reads the whole state, and the messages still waiting for a broker acknowledgement; throws {@link E2eStateError} on a corrupt row. */
  load(): BlindState & { outbox: E2eOutMessage[]; extra: unknown } {
    try {
      const meta = (k: string) => (this.db.prepare('SELECT v FROM meta WHERE k = ?').get(k) as { v: string } | undefined)?.v;
      const wm = meta('watermark');
      const counters = JSON.parse(meta('counters') ?? '{}') as Partial<BlindCounters>;
      const windows = (this.db.prepare('SELECT kind, key, start, body FROM windows').all() as { kind: string; key: string; start: number; body: Buffer }[]).map((r) => decodeWindow(r.kind, r.key, r.start, r.body));
      const meters = new Map<string, BlindMeterRecord>();
      for (const r of this.db.prepare('SELECT meter, body FROM meters').all() as { meter: string; body: Buffer }[]) meters.set(r.meter, decodeMeter(r.body));
      const outbox = (this.db.prepare('SELECT id, topic, payload FROM outbox ORDER BY id').all() as E2eOutMessage[]).map((r) => ({ ...r }));
      const extra = meta('extra');
      return { windows, meters, watermark: wm === undefined ? null : Number(wm), counters, outbox, extra: extra === undefined ? undefined : (JSON.parse(extra) as unknown) };
    } catch (e) {
      throw new E2eStateError(`${this.file}: unreadable state (${(e as Error).message}); restore a backup or use a new --state file`);
    }
  }

  /**
   * Writes a checkpoint and its outgoing messages, and deletes acknowledged outbox rows, in one transaction;
   * `extra` (JSON) is the caller's own small state beside the windows (e.g. a ledger), written when given.
   * Returns the messages with their row ids: publish them only now (they are durable).
   */
  commit(cp: BlindCheckpoint, out: { topic: string; payload: Buffer }[], confirmed: Iterable<number> = [], extra?: unknown): E2eOutMessage[] {
    const s = this.stmts;
    return this.db.transaction(() => {
      for (const w of cp.windows) s.putWindow.run(w.kind, w.key, w.start, encodeWindow(w));
      for (const e of cp.evicted) s.delWindow.run(e.kind, e.key, e.start);
      for (const [id, m] of cp.meters) s.putMeter.run(id, encodeMeter(m));
      for (const id of confirmed) s.delOut.run(id);
      const stored = out.map((m) => ({ ...m, id: Number(s.putOut.run(m.topic, m.payload).lastInsertRowid) }));
      if (cp.watermark !== null) s.putMeta.run('watermark', String(cp.watermark));
      s.putMeta.run('counters', JSON.stringify(cp.counters));
      if (extra !== undefined) s.putMeta.run('extra', JSON.stringify(extra));
      return stored;
    })();
  }

  /** Deletes acknowledged outbox rows. */
  confirm(ids: Iterable<number>): void {
    const del = this.stmts.delOut;
    this.db.transaction(() => {
      for (const id of ids) del.run(id);
    })();
  }

  /** Rows in the windows table (for tests and operators). */
  get windowRows(): number {
    return (this.db.prepare('SELECT count(*) AS n FROM windows').get() as { n: number }).n;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
