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
import { chmodSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { FrameStore } from './forwarder.js';

/** A {@link FrameStore} backed by SQLite, plus `close()`. */
export interface FrameQueue extends FrameStore {
  close(): void;
}

/**
 * Opens (creating if needed, mode 0600) the queue file at `path`; `':memory:'` gives a volatile queue.
 * @example
 * ```ts
 * const queue = openFrameQueue('state/gateway-gw-n1.queue.db');
 * const seq = queue.add('534d520000000001:7', frameBytes);
 * queue.remove([seq]);
 * queue.close();
 * ```
 */
export function openFrameQueue(path: string): FrameQueue {
  if (typeof path !== 'string' || path.length === 0) throw new TypeError('queue path must be a non-empty string');
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  let db: Database.Database;
  try {
    db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.exec('CREATE TABLE IF NOT EXISTS frames (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, frame BLOB NOT NULL)');
  } catch (e) {
    throw new Error(`cannot open gateway queue ${path}: ${(e as Error).message}`);
  }
  if (path !== ':memory:') chmodSync(path, 0o600);
  const insert = db.prepare<[string, Uint8Array]>('INSERT INTO frames (key, frame) VALUES (?, ?)');
  const del = db.prepare<[number]>('DELETE FROM frames WHERE seq = ?');
  const all = db.prepare<[], { seq: number; frame: Buffer }>('SELECT seq, frame FROM frames ORDER BY seq');
  const removeMany = db.transaction((seqs: number[]) => {
    for (const s of seqs) del.run(s);
  });
  return {
    load: () => all.all().map((r) => ({ seq: r.seq, bytes: r.frame })),
    add: (key, bytes) => Number(insert.run(key, Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)).lastInsertRowid),
    remove: (seqs) => removeMany(seqs),
    close: () => {
      if (db.open) db.close();
    },
  };
}
