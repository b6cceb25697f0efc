/**
 * Security finding 11: state files and their SQLite -wal/-shm were 0644 because the mode was set after the
 * WAL existed. Every store now creates its file 0600 first (lib/private-file.ts); checked while each store is
 * open (when its -wal and -shm exist), under a permissive umask so the mode cannot come from the umask.
 */
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqlitePersistence } from '../../broker/persistence.js';
import { openFrameQueue } from '../../gateway/queue.js';
import { privateFile } from '../../lib/private-file.js';
import { openSqlite } from '../../mdms/store/sqlite.js';
import { PesStore } from '../../pes/store.js';
import { UcsDb } from '../../ucs/db.js';

const dir = mkdtempSync(join(tmpdir(), 'sm-private-'));
let umask = 0;
beforeAll(() => {
  umask = process.umask(0o022);
});
afterAll(() => {
  process.umask(umask);
  rmSync(dir, { recursive: true, force: true });
});

const modeOf = (p: string) => statSync(p).mode & 0o777;

/** The file and its -wal/-shm (those that exist) are 0600. */
function expectPrivate(file: string): void {
  expect(modeOf(file), file).toBe(0o600);
  expect(existsSync(`${file}-wal`), `${file}-wal exists while open`).toBe(true);
  for (const s of ['-wal', '-shm']) if (existsSync(file + s)) expect(modeOf(file + s), file + s).toBe(0o600);
}

describe('state files are private from the start', () => {
  it('privateFile creates the file 0600 in a 0700 folder, and makes an existing one private', () => {
    const f = join(dir, 'new', 'state.db');
    privateFile(f);
    expect(modeOf(f)).toBe(0o600);
    expect(modeOf(join(dir, 'new'))).toBe(0o700);
  });

  it('PES state, broker state, gateway queue, MDMS store and household app database, with their -wal and -shm', async () => {
    const pes = PesStore.open(join(dir, 'pes.sqlite'), { rsa: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, paillierKeyId: 'k', config: {} });
    const broker = new SqlitePersistence(join(dir, 'broker', 'broker.sqlite'));
    const queue = openFrameQueue(join(dir, 'gw', 'queue.sqlite'));
    const mdms = openSqlite(join(dir, 'mdms.sqlite'));
    const ucs = new UcsDb(join(dir, 'ucs.sqlite'), { idleMs: 1000, maxMs: 2000 });
    try {
      queue.add(Buffer.from('x'));
      queue.flush();
      await mdms.transaction(async (tx) => tx.exec('CREATE TABLE t (x INTEGER)'));
      for (const f of ['pes.sqlite', 'broker/broker.sqlite', 'gw/queue.sqlite', 'mdms.sqlite', 'ucs.sqlite']) expectPrivate(join(dir, f));
    } finally {
      pes.close();
      void broker.destroy();
      queue.close();
      void mdms.close();
      ucs.close();
    }
  });
});
