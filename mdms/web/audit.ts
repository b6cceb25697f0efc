/**
 * The audit log: who did or looked at what, when, from where, and whether it was allowed. Append-only and
 * hash-chained: each entry stores SHA-256(previous hash || its own fields), so deleting or editing an entry
 * in the database breaks {@link AuditLog.verify} from that entry on — what a regulator needs to trust it.
 *
 * Entries name things by their ids (account numbers, neighbourhood keys, periods), never by energy values.
 * @module
 */
import { createHash } from 'node:crypto';
import type { Driver, Param, Querier } from '../store/driver.js';
import { int, intOrNull, text } from './rows.js';

/** What happened. */
export const AUDIT_ACTIONS = [
  'login',
  'logout',
  'password.change',
  'user.create',
  'user.update',
  'tariff.create',
  'tariff.withdraw',
  'account.tariff',
  'settings.update',
  'view.accounts',
  'view.account',
  'view.bill',
  'view.meters',
  'view.audit',
  'bill.run',
  'bill.issue',
  'bill.note',
  'export.neighbourhood',
  'export.billing',
  'export.bills',
  'access.denied',
  'ingest.refused',
  'quality.run',
  'quality.anomaly',
  'view.privacy',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];
export type AuditOutcome = 'ok' | 'denied' | 'failed';

/** An entry to record. */
export interface AuditEvent {
  userId: number | null;
  /** The user, or for a failed login the name that was tried (truncated). */
  username: string;
  action: AuditAction;
  /** What was looked at or changed (an account number, a route, a user...). */
  target: string;
  outcome: AuditOutcome;
  ip: string;
  /** Small structured context (range, format, role change); never energy or money figures. */
  detail?: Record<string, string | number | boolean | null>;
}

/** A stored entry. */
export interface AuditEntry extends Required<AuditEvent> {
  id: number;
  atMs: number;
  hash: string;
}

/** Filters for {@link AuditLog.list}: newest first, `before` an id for the next page. */
export interface AuditQuery {
  username?: string;
  action?: AuditAction;
  target?: string;
  fromMs?: number;
  toMs?: number;
  before?: number;
  limit?: number;
}

const GENESIS = '0'.repeat(64);

function chain(prev: string, e: { atMs: number; userId: number | null; username: string; action: string; target: string; outcome: string; ip: string; detail: string }): string {
  return createHash('sha256')
    .update(JSON.stringify([prev, e.atMs, e.userId, e.username, e.action, e.target, e.outcome, e.ip, e.detail]))
    .digest('hex');
}

const row = (r: Record<string, unknown>): AuditEntry & { prevHash: string; detailText: string } => {
  const detailText = text(r.detail, 'detail');
  return {
    id: int(r.id, 'audit id'),
    atMs: int(r.at_ms, 'at_ms'),
    userId: intOrNull(r.user_id, 'user id'),
    username: text(r.username, 'username'),
    action: text(r.action, 'action') as AuditAction,
    target: text(r.target, 'target'),
    outcome: text(r.outcome, 'outcome') as AuditOutcome,
    ip: text(r.ip, 'ip'),
    detail: JSON.parse(detailText) as AuditEntry['detail'],
    detailText,
    prevHash: text(r.prev_hash, 'prev_hash'),
    hash: text(r.hash, 'hash'),
  };
};

/**
 * The audit repository.
 * @example
 * ```ts
 * const audit = new AuditLog(driver);
 * await audit.record({ userId: 1, username: 'bob', action: 'view.bill', target: 'SM-7K2F-9QXD', outcome: 'ok', ip: '10.0.0.5' });
 * ```
 */
export class AuditLog {
  constructor(
    private readonly db: Driver,
    private readonly now: () => number = Date.now,
    private readonly onRecord: (e: AuditEvent) => void = () => undefined,
  ) {}

  /**
   * Appends an entry (serialised with other writers so the chain stays linear). Given `within`, a transaction
   * of the caller, the entry commits or rolls back with what it records (an issued bill and its entry).
   */
  async record(e: AuditEvent, within?: Querier): Promise<number> {
    const entry = {
      atMs: this.now(),
      userId: e.userId,
      username: e.username.slice(0, 64),
      action: e.action,
      target: e.target.slice(0, 200),
      outcome: e.outcome,
      ip: e.ip.slice(0, 64),
      detail: JSON.stringify(e.detail ?? {}).slice(0, 2000),
    };
    const append = async (tx: Querier): Promise<number> => {
      await tx.lock('web_audit');
      const [last] = await tx.query('SELECT hash FROM web_audit ORDER BY id DESC LIMIT 1', []);
      const prev = last ? text(last.hash, 'hash') : GENESIS;
      const [r] = await tx.query(
        'INSERT INTO web_audit (at_ms, user_id, username, action, target, outcome, ip, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id',
        [entry.atMs, entry.userId, entry.username, entry.action, entry.target, entry.outcome, entry.ip, entry.detail, prev, chain(prev, entry)],
      );
      return int(r?.id, 'audit id');
    };
    const id = within ? await append(within) : await this.db.transaction(append);
    this.onRecord(e);
    return id;
  }

  /** Entries matching `q`, newest first. */
  async list(q: AuditQuery = {}): Promise<AuditEntry[]> {
    const where: string[] = [];
    const params: Param[] = [];
    const add = (sql: string, v: Param): void => {
      where.push(sql);
      params.push(v);
    };
    if (q.username) add('username = ?', q.username);
    if (q.action) add('action = ?', q.action);
    if (q.target) add('target = ?', q.target);
    if (q.fromMs !== undefined) add('at_ms >= ?', q.fromMs);
    if (q.toMs !== undefined) add('at_ms < ?', q.toMs);
    if (q.before !== undefined) add('id < ?', q.before);
    const limit = Math.min(Math.max(q.limit ?? 100, 1), 1000);
    const rows = await this.db.query(`SELECT * FROM web_audit ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`, [...params, limit]);
    return rows.map((r) => {
      const { prevHash: _p, detailText: _d, ...e } = row(r);
      return e;
    });
  }

  /** Recomputes the whole chain; returns the number of entries and the first broken id, if any. */
  async verify(): Promise<{ entries: number; ok: boolean; brokenAt: number | null }> {
    let prev = GENESIS;
    let n = 0;
    let after = 0;
    for (;;) {
      const page = (await this.db.query('SELECT * FROM web_audit WHERE id > ? ORDER BY id LIMIT 1000', [after])).map(row);
      if (page.length === 0) return { entries: n, ok: true, brokenAt: null };
      for (const e of page) {
        const expect = chain(prev, { ...e, detail: e.detailText });
        if (e.prevHash !== prev || e.hash !== expect) return { entries: n, ok: false, brokenAt: e.id };
        prev = e.hash;
        n++;
        after = e.id;
      }
    }
  }
}
