/**
 * The household's history in its own browser (IndexedDB, via idb): one database per household, rows keyed
 * by (meter, period start) so a reading that arrives twice (live and from the archive) is stored once.
 * This is the only place outside the meter where the readings exist in clear, and it is the household's.
 * @module
 */
import { deleteDB, openDB, type DBSchema, type IDBPDatabase } from 'idb';
import type { Row } from './body.js';

interface Schema extends DBSchema {
  readings: { key: [string, number]; value: Row; indexes: { time: number } };
  meta: { key: string; value: unknown };
}

const dbName = (household: string) => `smartermeter-ucs-${household}`;

/**
 * The rows of one household in IndexedDB.
 * @example
 * ```ts
 * const store = await ReadingStore.open('hh1');
 * await store.put(rows);
 * const today = await store.between(range.start, range.end);
 * ```
 */
export class ReadingStore {
  private constructor(private readonly db: IDBPDatabase<Schema>) {}

  static async open(household: string): Promise<ReadingStore> {
    const db = await openDB<Schema>(dbName(household), 1, {
      upgrade(d) {
        d.createObjectStore('readings', { keyPath: ['meter', 'time'] }).createIndex('time', 'time');
        d.createObjectStore('meta');
      },
    });
    return new ReadingStore(db);
  }

  /** Deletes a household's whole local history ("forget this device's data"). */
  static async forget(household: string): Promise<void> {
    await deleteDB(dbName(household));
  }

  async put(rows: readonly Row[]): Promise<void> {
    if (rows.length === 0) return;
    const tx = this.db.transaction('readings', 'readwrite');
    await Promise.all([...rows.map((r) => tx.store.put(r)), tx.done]);
  }

  /** Rows whose period starts in `[from, to)`, in time order. */
  between(from: number, to: number): Promise<Row[]> {
    return this.db.getAllFromIndex('readings', 'time', IDBKeyRange.bound(from, to, false, true));
  }

  /** The newest `n` rows (any meter), newest first. */
  async newest(n: number): Promise<Row[]> {
    const out: Row[] = [];
    let cursor = await this.db.transaction('readings').store.index('time').openCursor(null, 'prev');
    while (cursor && out.length < n) {
      out.push(cursor.value);
      cursor = await cursor.continue();
    }
    return out;
  }

  /** The oldest row, or undefined. */
  async oldest(): Promise<Row | undefined> {
    return (await this.db.transaction('readings').store.index('time').openCursor(null, 'next'))?.value;
  }

  count(): Promise<number> {
    return this.db.count('readings');
  }

  async getMeta<T>(key: string): Promise<T | undefined> {
    return (await this.db.get('meta', key)) as T | undefined;
  }

  async setMeta(key: string, value: unknown): Promise<void> {
    await this.db.put('meta', value, key);
  }

  close(): void {
    this.db.close();
  }
}
