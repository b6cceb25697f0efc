/**
 * lib/pg-transaction.ts against the real PostgreSQL: a transaction commits or rolls back as a whole, and a
 * connection the server ends inside one (an idle-in-transaction timeout, as when a paused PES resumes) fails
 * that transaction with a ConnectionLostError instead of killing the process with an unhandled 'error' event.
 * Needs PostgreSQL at PG_URL: skipped without it, except under CI=true where it fails.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConnectionLostError, inTransaction } from '../../lib/pg-transaction.js';
import { IN_CI, PG_UP, PG_URL, dropSchema } from '../mdms/helpers.js';

describe.runIf(PG_UP || IN_CI)('lib/pg-transaction', () => {
  const schema = `t_pgtx_${randomBytes(4).toString('hex')}`;
  let pool: pg.Pool;
  beforeAll(async () => {
    if (!PG_UP) throw new Error(`PostgreSQL is not reachable at ${PG_URL} (CI=true: this test must not be skipped)`);
    const setup = new pg.Client({ connectionString: PG_URL });
    await setup.connect();
    await setup.query(`CREATE SCHEMA ${schema}; CREATE TABLE ${schema}.t (n INT)`);
    await setup.end();
    pool = new pg.Pool({ connectionString: PG_URL, max: 2, options: `-c search_path=${schema} -c idle_in_transaction_session_timeout=200` });
    pool.on('error', () => undefined);
  });
  afterAll(async () => {
    await pool?.end();
    if (PG_UP) await dropSchema(schema, PG_URL);
  });

  it('commits what the function wrote, and rolls everything back when it throws', async () => {
    expect(await inTransaction(pool, async (c) => (await c.query('INSERT INTO t VALUES (1), (2) RETURNING n')).rowCount)).toBe(2);
    await expect(
      inTransaction(pool, async (c) => {
        await c.query('INSERT INTO t VALUES (3)');
        throw new Error('the caller gave up');
      }),
    ).rejects.toThrow('the caller gave up');
    expect((await pool.query('SELECT n FROM t ORDER BY n')).rows.map((r) => r.n)).toEqual([1, 2]);
  });

  it('a connection ended inside the transaction: a ConnectionLostError, nothing written, the pool still serves', async () => {
    const err = await inTransaction(pool, async (c) => {
      await c.query('INSERT INTO t VALUES (4)');
      await new Promise((r) => setTimeout(r, 1_000)); // idle in transaction past the server's 200 ms: it ends the session
      await c.query('INSERT INTO t VALUES (5)');
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionLostError);
    expect((err as Error).message).toMatch(/^the database connection was lost inside a transaction, which the server rolled back \(nothing of it was written\): /);
    expect((await pool.query('SELECT n FROM t ORDER BY n')).rows.map((r) => r.n)).toEqual([1, 2]);
  });
});
