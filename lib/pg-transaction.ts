/**
 * A PostgreSQL transaction on a client checked out of a pool, one way for the PES state and the MDMS store.
 * @module
 */
import type pg from 'pg';

/** The connection broke inside a transaction: the server rolled it back, nothing of it was written. */
export class ConnectionLostError extends Error {
  override name = 'ConnectionLostError';
}

/**
 * Runs `fn` between BEGIN and COMMIT on a client of `pool`; on any error rolls back, drops the client from the
 * pool and rethrows. pg-pool removes its own 'error' listener from a client while it is checked out, so a
 * connection the server ends between two queries (an idle-in-transaction timeout while the process was paused,
 * a server restart) would be an unhandled 'error' event that kills the process with a stack trace. Here the
 * event is kept, and the transaction fails with a {@link ConnectionLostError} that says what happened.
 * @example
 * ```ts
 * const n = await inTransaction(pool, async (c) => (await c.query('SELECT 1 AS n')).rows[0].n);
 * ```
 */
export async function inTransaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  let lost: Error | undefined;
  const onError = (e: Error) => void (lost ??= e);
  c.on('error', onError);
  try {
    await c.query('BEGIN');
    const r = await fn(c);
    await c.query('COMMIT');
    c.off('error', onError);
    c.release();
    return r;
  } catch (e) {
    if (!lost) await c.query('ROLLBACK').catch(() => undefined);
    c.off('error', onError);
    c.release(e instanceof Error ? e : true); // a client whose connection broke must not go back to the pool
    if (lost) throw new ConnectionLostError(`the database connection was lost inside a transaction, which the server rolled back (nothing of it was written): ${lost.message}`, { cause: e });
    throw e;
  }
}
