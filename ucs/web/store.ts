/**
 * The household's history in its own browser (IndexedDB, via idb): one database per household, rows keyed
 * by (meter, period start) so a reading that arrives twice (live and from the archive) is stored once.
 * This is the only place outside the meter where the readings exist in clear, and it is the household's.
 *
 * Versions: 1 kept import only; 2 adds the export register and exported energy to every row (rows of version
 * 1 are rewritten with both 0 on upgrade: a meter of that time exported nothing the app could see).
 * @module
 */
import { deleteDB, openDB, type DBSchema, type IDBPDatabase } from 'idb';
import { upgradeRow, type Row } from './body.js';

interface Schema extends DBSchema {
  readings: { key: [string, number]; value: Row; indexes: { time: number } };
  meta: { key: string; value: unknown };
}

const dbName = (household: string) => `smartermeter-ucs-${household}`;
/** IndexedDB version of the household's database (see the module comment). */
export const STORE_VERSION = 2;

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
    const db = await openDB<Schema>(dbName(household), STORE_VERSION, {
      async upgrade(d, oldVersion, _newVersion, tx) {
        if (oldVersion < 1) {
          d.createObjectStore('readings', { keyPath: ['meter', 'time'] }).createIndex('time', 'time');
          d.createObjectStore('meta');
          return;
        }
        if (oldVersion < 2) {
          for (let c = await tx.objectStore('readings').openCursor(); c; c = await c.continue()) await c.update(upgradeRow(c.value));
        }
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

  /**
   * The newest row of each meter that starts before `t` (the register a range starts from, so that the energy
   * of a gap before the range's first reading is attributed as the PES attributes it).
   */
  async lastBefore(t: number): Promise<Map<string, Row>> {
    const out = new Map<string, Row>();
    const store = this.db.transaction('readings').store;
    // Primary keys are [meter, time]: hop from meter to meter, taking each one's last row before t.
    for (let k = await store.openKeyCursor(); k; k = await store.openKeyCursor(IDBKeyRange.lowerBound([k.key[0], Infinity], true))) {
      const meter = k.key[0];
      const last = await store.openCursor(IDBKeyRange.bound([meter, -Infinity], [meter, t], false, true), 'prev');
      if (last) out.set(meter, last.value);
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
