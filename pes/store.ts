/**
 * The PES state file: SQLite (better-sqlite3) in WAL mode.
 *
 * What is in it, and why none of it is a reading:
 * - `windows`: per open or retained window (the PES holds only the open ones in memory; a closed one is read
 *   back by `loadWindows` when a late reading comes for it) its Paillier ciphertexts (re-randomised before every write, so
 *   no two versions of a row, in the file or in its -wal, differ by a known factor), the set of contributing
 *   meter ids (the count is public), revision and status;
 * - `meters`: per meter the anti-replay window, baseline / last registers (import and export) / remembered
 *   gaps and replay streak, as CBOR sealed with AES-256-GCM under a random state key (registers over time ARE
 *   readings, so they never touch the file in clear);
 * - `households`: household public keys received at runtime (public);
 * - `outbox`: sealed messages (to the MDMS or a household) committed but not yet acknowledged by the broker;
 * - `dp`: the DP ledger, epsilon spent per neighbourhood (day -1) and per neighbourhood and UTC day (no reading);
 * - `meta`: format, configuration fingerprint, Paillier key id, the state key wrapped with RSA-OAEP-SHA-256
 *   to the PES's own RSA key, the watermark, each neighbourhood's clock (`clock:<nb>`) and the counters.
 *
 * Durability: `synchronous = FULL` by default. In WAL mode NORMAL survives a process crash but may lose the
 * last transactions on power loss; since the PES acknowledges MQTT messages as soon as their transaction
 * commits, only FULL makes the PUBACK mean "durable" (NORMAL is offered for bulk replays and benchmarks).
 * @module
 */
import { createHash, createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import Database from 'better-sqlite3';
import { gcmDecrypt, gcmEncrypt } from '../protocol/aead.js';
import { cborDecode, cborEncode } from '../protocol/cbor.js';
import { unwrapKey, wrapKey } from '../protocol/seal.js';
import { DIGEST_DEPTH } from '../protocol/replay-window.js';
import { energyState } from './core/energy.js';
import { privateFile } from '../lib/private-file.js';
import type { Checkpoint, MeterRecord, NeighbourhoodClock, OutMessage, ReleasedCount, Snapshot, WindowRecord, WindowRef } from './core/pes.js';
import type { PesCounters } from './core/counters.js';

/** The state's format (both back ends). */
export const FORMAT = '1';

export interface StoreOptions {
  /** The PES RSA private key: wraps/unwraps the state key. */
  rsa: KeyObject;
  /** Paillier key id (engine `keyId`): the state is only valid for the key that made its ciphertexts. */
  paillierKeyId: string;
  /** Settings that shape windows (interval, billing period, zone, tariff): must not change under a state file. */
  config: Record<string, unknown>;
  synchronous?: 'FULL' | 'NORMAL';
}

export interface StoredOutMessage extends OutMessage {
  id: number;
}

/**
 * Raised when a state file cannot be used with the given keys or settings.
 * @example
 * ```ts
 * try { PesStore.open(file, opts); } catch (e) { if (e instanceof StateMismatchError) console.error(e.message); }
 * ```
 */
export class StateMismatchError extends Error {
  override name = 'StateMismatchError';
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS windows (
  kind TEXT NOT NULL, key TEXT NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL,
  revision INTEGER NOT NULL, closed INTEGER NOT NULL, suppressed INTEGER NOT NULL,
  acc BLOB NOT NULL, meters BLOB NOT NULL, changed BLOB NOT NULL, released BLOB,
  PRIMARY KEY (kind, key, start)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meters (meter TEXT PRIMARY KEY, sealed BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS households (household TEXT PRIMARY KEY, spki BLOB) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS dp (neighbourhood TEXT NOT NULL, day INTEGER NOT NULL, spent REAL NOT NULL, PRIMARY KEY (neighbourhood, day)) WITHOUT ROWID;
`;

/** The `day` of a neighbourhood's all-time line in the `dp` table (days are >= 0). */
const ALL_TIME = -1;

/**
 * SHA-256 of a value's JSON: how a state remembers the settings that shaped it.
 * @example
 * ```ts
 * fingerprint({ intervalS: 900 }); // 64 hex digits
 * ```
 */
export function fingerprint(x: unknown): string {
  return createHash('sha256').update(JSON.stringify(x)).digest('hex');
}

/**
 * Seals one meter's record (anti-replay window, registers, gaps) with AES-256-GCM under the state key, the
 * meter id in the AAD: what every state back end (this file, pes/pg-state.ts) stores for a meter.
 * @example
 * ```ts
 * const blob = sealMeterRecord(stateKey, meterId, record);
 * unsealMeterRecord(stateKey, meterId, blob); // the record again
 * ```
 */
export function sealMeterRecord(stateKey: Buffer, meter: string, rec: MeterRecord): Buffer {
  const iv = randomBytes(12);
  const digests = rec.replay.digests ? new Uint8Array(rec.replay.digests.buffer, rec.replay.digests.byteOffset, rec.replay.digests.byteLength) : new Uint8Array(0);
  const body = cborEncode({ r: [rec.replay.highest, rec.replay.bitmap, digests], e: rec.energy, s: rec.replayStreak, ...(rec.keyGeneration ? { g: rec.keyGeneration } : {}) });
  try {
    return Buffer.concat([iv, gcmEncrypt(stateKey, iv, body, Buffer.from(`pes-meter:${meter}`), 16)]);
  } finally {
    body.fill(0);
  }
}

/**
 * Opens a record sealed by {@link sealMeterRecord}; throws if the blob was altered or belongs to another meter.
 * @example
 * ```ts
 * const record = unsealMeterRecord(stateKey, meterId, blob);
 * ```
 */
export function unsealMeterRecord(stateKey: Buffer, meter: string, blob: Buffer): MeterRecord {
  const pt = gcmDecrypt(stateKey, blob.subarray(0, 12), blob.subarray(12), Buffer.from(`pes-meter:${meter}`), 16);
  try {
    const o = cborDecode(pt) as { r: [number, Uint8Array, Uint8Array?]; e: MeterRecord['energy']; s: number; g?: number };
    // Frame digests (4 bytes per counter, platform byte order as written) since duplicates were told apart.
    const d = o.r[2];
    const digests = d && d.length === DIGEST_DEPTH * 4 ? new Uint32Array(Uint8Array.from(d).buffer) : undefined;
    const keyGeneration = Number.isSafeInteger(o.g) && o.g! > 0 ? { keyGeneration: o.g! } : {};
    return { replay: { highest: o.r[0], bitmap: Uint8Array.from(o.r[1]), ...(digests ? { digests } : {}) }, energy: energyState(o.e), replayStreak: o.s, ...keyGeneration };
  } finally {
    pt.fill(0);
  }
}

/** The `meta` key prefix of a neighbourhood's clock (both back ends). */
export const CLOCK_PREFIX = 'clock:';

/**
 * Parses a stored neighbourhood clock (`meta` value, JSON); null if it is not one.
 * @example
 * ```ts
 * clockFromMeta('{"first":10,"firstMeter":"a","second":null}'); // { first: 10, firstMeter: 'a', second: null }
 * ```
 */
export function clockFromMeta(v: string): NeighbourhoodClock | null {
  try {
    const c = JSON.parse(v) as NeighbourhoodClock;
    const ok = Number.isSafeInteger(c.first) && typeof c.firstMeter === 'string' && (c.second === null || Number.isSafeInteger(c.second));
    return ok ? { first: c.first, firstMeter: c.firstMeter, second: c.second } : null;
  } catch {
    return null;
  }
}

/**
 * A row of the released-membership summary (columns key, day, released CBOR, n) as the core's count.
 * @example
 * ```ts
 * const released = rows.map(releasedFromRow);
 * ```
 */
export function releasedFromRow(r: Record<string, unknown>): ReleasedCount {
  return { neighbourhood: r.key as string, day: Number(r.day), released: cborDecode(r.released as Buffer) as string[], windows: Number(r.n) };
}

/**
 * A `windows` row (columns kind, key, start, end, revision, closed, suppressed and the CBOR blobs acc, meters,
 * changed, released) as the core's record; `closed`/`suppressed` may be 0/1 or booleans.
 * @example
 * ```ts
 * const windows = rows.map(windowFromRow);
 * ```
 */
export function windowFromRow(r: Record<string, unknown>): WindowRecord {
  return {
    kind: r.kind as WindowRecord['kind'],
    key: r.key as string,
    start: Number(r.start),
    end: Number(r.end),
    revision: Number(r.revision),
    closed: r.closed === 1 || r.closed === true,
    suppressed: r.suppressed === 1 || r.suppressed === true,
    acc: cborDecode(r.acc as Buffer) as [string, Uint8Array][],
    meters: cborDecode(r.meters as Buffer) as string[],
    changed: cborDecode(r.changed as Buffer) as string[],
    released: r.released == null ? null : (cborDecode(r.released as Buffer) as string[]),
  };
}

/**
 * @example
 * ```ts
 * const store = PesStore.open('pes-state.db', { rsa, paillierKeyId: paillier.keyId, config });
 * core.restore(store.load());
 * const ids = store.commit(core.checkpoint(), confirmedIds);
 * ```
 */
export class PesStore {
  private readonly db: Database.Database;
  private readonly stateKey: Buffer;
  private readonly stmts;

  private constructor(db: Database.Database, stateKey: Buffer) {
    this.db = db;
    this.stateKey = stateKey;
    this.stmts = {
      putWindow: db.prepare(
        'INSERT OR REPLACE INTO windows (kind, key, start, end, revision, closed, suppressed, acc, meters, changed, released) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      getWindow: db.prepare('SELECT * FROM windows WHERE kind = ? AND key = ? AND start = ?'),
      delBehind: db.prepare('DELETE FROM windows WHERE kind = ? AND key = ? AND closed = 1 AND end < ?'),
      putMeter: db.prepare('INSERT OR REPLACE INTO meters (meter, sealed) VALUES (?, ?)'),
      putHousehold: db.prepare('INSERT OR REPLACE INTO households (household, spki) VALUES (?, ?)'),
      putOut: db.prepare('INSERT INTO outbox (kind, topic, payload) VALUES (?, ?, ?)'),
      delOut: db.prepare('DELETE FROM outbox WHERE id = ?'),
      putMeta: db.prepare('INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)'),
      putDp: db.prepare('INSERT OR REPLACE INTO dp (neighbourhood, day, spent) VALUES (?, ?, ?)'),
      delDp: db.prepare('DELETE FROM dp WHERE neighbourhood = ? AND day = ?'),
    };
  }

  /** Opens (or creates) a state file; throws {@link StateMismatchError} if it belongs to other keys or settings. */
  static open(file: string, opts: StoreOptions): PesStore {
    let db: Database.Database;
    try {
      privateFile(file);
      db = new Database(file);
    } catch (e) {
      throw new Error(`cannot open PES state file ${file}: ${(e as Error).message}`);
    }
    try {
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${opts.synchronous === 'NORMAL' ? 'NORMAL' : 'FULL'}`);
      db.exec(SCHEMA);
      // State files from before the membership guard: the released membership of each window (null = unknown).
      if (!(db.prepare('SELECT name FROM pragma_table_info(\'windows\')').all() as { name: string }[]).some((c) => c.name === 'released')) db.exec('ALTER TABLE windows ADD COLUMN released BLOB');
      const get = (k: string) => (db.prepare('SELECT v FROM meta WHERE k = ?').get(k) as { v: Buffer | string } | undefined)?.v;
      const paillierId = opts.paillierKeyId;
      const config = fingerprint(opts.config);
      let stateKey: Buffer;
      if (get('format') === undefined) {
        stateKey = randomBytes(32);
        const put = db.prepare('INSERT INTO meta (k, v) VALUES (?, ?)');
        db.transaction(() => {
          put.run('format', FORMAT);
          put.run('paillier', paillierId);
          put.run('config', config);
          put.run('configText', JSON.stringify(opts.config));
          put.run('stateKey', wrapKey(createPublicKey(opts.rsa), stateKey));
        })();
      } else {
        if (String(get('format')) !== FORMAT) throw new StateMismatchError(`${file}: unsupported state format ${String(get('format'))}`);
        if (String(get('paillier')) !== paillierId) throw new StateMismatchError(`${file} was written with another Paillier key; use a new --state file`);
        if (String(get('config')) !== config) {
          throw new StateMismatchError(`${file} was written with other window settings (${String(get('configText'))}); use a new --state file or the same settings`);
        }
        try {
          stateKey = unwrapKey(opts.rsa, get('stateKey') as Buffer);
        } catch {
          throw new StateMismatchError(`${file}: the state key does not open with this PES RSA key`);
        }
      }
      return new PesStore(db, stateKey);
    } catch (e) {
      db.close();
      throw e;
    }
  }

  /** Reads the whole state, and the messages still waiting for a broker acknowledgement. */
  load(): Snapshot & { outbox: StoredOutMessage[] } {
    const meta = (k: string) => (this.db.prepare('SELECT v FROM meta WHERE k = ?').get(k) as { v: string } | undefined)?.v;
    const wm = meta('watermark');
    const counters = JSON.parse(meta('counters') ?? '{}') as Partial<PesCounters>;
    const windows = (this.db.prepare('SELECT * FROM windows WHERE closed = 0').all() as Record<string, unknown>[]).map(windowFromRow);
    const released = (
      this.db.prepare("SELECT key, start / 86400 AS day, released, COUNT(*) AS n FROM windows WHERE kind = 'neighbourhood' AND closed = 1 AND released IS NOT NULL GROUP BY key, day, released").all() as Record<string, unknown>[]
    ).map(releasedFromRow);
    const clocks: [string, NeighbourhoodClock][] = [];
    for (const r of this.db.prepare('SELECT k, v FROM meta WHERE k >= ? AND k < ?').all(CLOCK_PREFIX, `${CLOCK_PREFIX}\uffff`) as { k: string; v: Buffer | string }[]) {
      const c = clockFromMeta(String(r.v));
      if (c) clocks.push([r.k.slice(CLOCK_PREFIX.length), c]);
    }
    const meters = new Map<string, MeterRecord>();
    for (const r of this.db.prepare('SELECT meter, sealed FROM meters').all() as { meter: string; sealed: Buffer }[]) {
      meters.set(r.meter, unsealMeterRecord(this.stateKey, r.meter, r.sealed));
    }
    const households = new Map<string, Uint8Array | null>();
    for (const r of this.db.prepare('SELECT household, spki FROM households').all() as { household: string; spki: Buffer | null }[]) {
      households.set(r.household, r.spki);
    }
    const outbox = (this.db.prepare('SELECT id, kind, topic, payload FROM outbox ORDER BY id').all() as StoredOutMessage[]).map((r) => ({ ...r }));
    const dp = (this.db.prepare('SELECT neighbourhood, day, spent FROM dp').all() as { neighbourhood: string; day: number; spent: number }[]).map((r) => ({ ...r, day: r.day === ALL_TIME ? null : r.day }));
    return { windows, released, ...(clocks.length ? { clocks } : {}), meters, households, watermark: wm === undefined ? null : Number(wm), counters, outbox, dp };
  }

  /** The stored rows of the given windows (those that exist): what a late reading for a closed window folds into. */
  loadWindows(refs: WindowRef[]): WindowRecord[] {
    const out: WindowRecord[] = [];
    for (const r of refs) {
      const row = this.stmts.getWindow.get(r.kind, r.key, r.start) as Record<string, unknown> | undefined;
      if (row) out.push(windowFromRow(row));
    }
    return out;
  }

  /**
   * Writes a checkpoint and deletes acknowledged outbox rows, in one transaction. Returns the checkpoint's
   * outbox messages with their row ids (publish them only now: they are durable).
   */
  commit(cp: Checkpoint, confirmed: Iterable<number> = []): StoredOutMessage[] {
    const s = this.stmts;
    return this.db.transaction(() => {
      for (const w of cp.windows) {
        s.putWindow.run(w.kind, w.key, w.start, w.end, w.revision, w.closed ? 1 : 0, w.suppressed ? 1 : 0, cborEncode(w.acc), cborEncode(w.meters), cborEncode(w.changed), w.released ? cborEncode(w.released) : null);
      }
      for (const h of cp.horizons) {
        s.delBehind.run('neighbourhood', h.neighbourhood, h.before);
        for (const hh of h.households) s.delBehind.run('billing', hh, h.before);
      }
      for (const [nb, c] of cp.clocks) s.putMeta.run(CLOCK_PREFIX + nb, JSON.stringify(c));
      for (const [id, m] of cp.meters) s.putMeter.run(id, sealMeterRecord(this.stateKey, id, m));
      for (const [hh, spki] of cp.households) s.putHousehold.run(hh, spki === null ? null : Buffer.from(spki));
      for (const r of cp.dp) s.putDp.run(r.neighbourhood, r.day ?? ALL_TIME, r.spent);
      for (const r of cp.dpEvicted) s.delDp.run(r.neighbourhood, r.day);
      for (const id of confirmed) s.delOut.run(id);
      const out = cp.outbox.map((m) => ({ ...m, id: Number(s.putOut.run(m.kind, m.topic, m.payload).lastInsertRowid) }));
      if (cp.watermark !== null) s.putMeta.run('watermark', String(cp.watermark));
      s.putMeta.run('counters', JSON.stringify(cp.counters));
      return out;
    })();
  }

  /** Deletes acknowledged outbox rows. */
  confirm(ids: Iterable<number>): void {
    const del = this.stmts.delOut;
    this.db.transaction(() => {
      for (const id of ids) del.run(id);
    })();
  }

  close(): void {
    this.stateKey.fill(0);
    if (this.db.open) this.db.close();
  }
}
