/**
 * The gateway's on-disk frame queue (better-sqlite3, WAL). MQTT.js keeps unacknowledged publishes in
 * memory only; this queue survives a gateway restart, so frames received but not yet acknowledged by the
 * broker are re-published at start-up. It holds only ciphered frames (no readings in clear).
 *
 * `synchronous = NORMAL` in WAL mode survives a process crash but may lose the last transactions on power
 * loss; that is safe here because a frame is acknowledged to its meter only after the broker's PUBACK, so
 * the meter still holds (and retransmits) anything the queue could lose.
 * @module
 */
import { privateFile } from '../lib/private-file.js';
import Database from 'better-sqlite3';
import type { FrameStore } from './forwarder.js';

/** A {@link FrameStore} backed by SQLite, plus `close()`. */
export interface FrameQueue extends FrameStore {
  close(): void;
}

/**
 * Opens (creating if needed, mode 0600) the queue file at `path`; `':memory:'` gives a volatile queue.
 * Writes that fail in the background are reported to `onError` and retried by the next `flush()`.
 * @example
 * ```ts
 * const queue = openFrameQueue('state/gateway-gw-n1.queue.db');
 * const seq = queue.add(frameBytes);
 * queue.flush(); // durable now (otherwise at the end of this event-loop turn)
 * queue.remove([seq]);
 * queue.close();
 * ```
 */
export function openFrameQueue(path: string, onError: (err: Error) => void = () => undefined): FrameQueue {
  if (typeof path !== 'string' || path.length === 0) throw new TypeError('queue path must be a non-empty string');
  let db: Database.Database;
  try {
    privateFile(path);
    db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.exec('CREATE TABLE IF NOT EXISTS frames (seq INTEGER PRIMARY KEY, frame BLOB NOT NULL)');
  } catch (e) {
    throw new Error(`cannot open gateway queue ${path}: ${(e as Error).message}`);
  }
  const insert = db.prepare<[number, Buffer]>('INSERT INTO frames (seq, frame) VALUES (?, ?)');
  const del = db.prepare<[number]>('DELETE FROM frames WHERE seq = ?');
  const all = db.prepare<[], { seq: number; frame: Buffer }>('SELECT seq, frame FROM frames ORDER BY seq');
  let next = ((db.prepare('SELECT max(seq) AS m FROM frames').get() as { m: number | null }).m ?? 0) + 1;
  // Frames added in one event-loop turn are written in one transaction (a commit per frame would cost
  // more than everything else the gateway does); flush() forces the write before a publish.
  let pending: [number, Buffer][] = [];
  let scheduled: NodeJS.Immediate | undefined;
  const insertMany = db.transaction((rows: [number, Buffer][]) => {
    for (const [seq, frame] of rows) insert.run(seq, frame);
  });
  const removeMany = db.transaction((seqs: number[]) => {
    for (const s of seqs) del.run(s);
  });
  const flush = () => {
    clearImmediate(scheduled);
    scheduled = undefined;
    if (pending.length === 0 || !db.open) return;
    try {
      insertMany(pending); // one transaction: all rows or none
    } catch (e) {
      throw new Error(`gateway queue ${path}: ${(e as Error).message}`);
    }
    pending = [];
  };
  const flushSoon = () => {
    try {
      flush();
    } catch (e) {
      onError(e as Error); // the rows stay pending; the next flush (before any publish) retries
    }
  };
  return {
    load: () => {
      flush();
      return all.all().map((r) => ({ seq: r.seq, bytes: r.frame }));
    },
    add: (bytes) => {
      const seq = next++;
      pending.push([seq, Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)]);
      scheduled ??= setImmediate(flushSoon);
      return seq;
    },
    flush,
    remove: (seqs) => {
      flush();
      removeMany(seqs);
    },
    close: () => {
      flush();
      if (db.open) db.close();
    },
  };
}
