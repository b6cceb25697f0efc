/**
 * PostgreSQL adapter (pg Pool). BIGINT (int8) columns come back as JS numbers, checked to be safe integers
 * (pg's default is a string); a value beyond 2^53 fails the query instead of losing precision.
 * @module
 */
import pg from 'pg';
import { inTransaction } from '../../lib/pg-transaction.js';
import type { Driver, Param, Querier } from './driver.js';

/** PostgreSQL options. */
export interface PostgresOptions {
  /** Schema to create (if missing) and use as `search_path` (tests use one per run). Default: the server's. */
  schema?: string;
  /** Pool size. Default 4. */
  max?: number;
  /** Give up connecting after this long. Default 5000 ms. */
  connectTimeoutMs?: number;
  /** Called with errors of idle pooled connections (server restart, network cut); they are otherwise harmless. */
  onIdleError?: (e: Error) => void;
}

const SCHEMA = /^[a-z_][a-z0-9_]{0,62}$/;

function int8(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new RangeError('BIGINT value beyond 2^53 cannot be returned as a number');
  return n;
}

const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pg.types.builtins.INT8 ? int8 : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

/**
 * Removes the password from a connection URL (for logs and error messages).
 * @example
 * ```ts
 * redactUrl('postgres://mdms:secret@db/mdms'); // 'postgres://mdms:***@db/mdms'
 * ```
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparseable url)';
  }
}

/** `?` placeholders -> `$1, $2, ...` (our SQL has no `?` inside literals). */
function numbered(sql: string): string {
  let i = 0;
  return sql.replace(/\?/g, () => `$${++i}`);
}

function querier(c: pg.Pool | pg.PoolClient): Querier {
  return {
    query: async (sql, params) => (await c.query(numbered(sql), params as Param[])).rows as Record<string, unknown>[],
    run: async (sql, params) => (await c.query(numbered(sql), params as Param[])).rowCount ?? 0,
    exec: async (sql) => void (await c.query(sql)),
    lock: async (key) => void (await c.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [key])),
  };
}

/**
 * Connects a pool to `url` (nothing is sent until the first query).
 * @example
 * ```ts
 * const driver = openPostgres('postgres://postgres@127.0.0.1:5432/test', { schema: 'mdms' });
 * ```
 */
export function openPostgres(url: string, opts: PostgresOptions = {}): Driver {
  if (opts.schema !== undefined && !SCHEMA.test(opts.schema)) throw new TypeError(`schema must match ${SCHEMA.source}`);
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.max ?? 4,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 5000,
    types,
    ...(opts.schema ? { options: `-c search_path=${opts.schema}` } : {}),
  });
  pool.on('error', (e) => opts.onIdleError?.(e));
  const q = querier(pool);
  let closed: Promise<void> | undefined;
  let schemaReady: Promise<void> | undefined;
  // The schema must exist before the first statement that relies on search_path.
  const ready = (): Promise<void> => {
    if (!opts.schema) return Promise.resolve();
    schemaReady ??= pool.query(`CREATE SCHEMA IF NOT EXISTS ${opts.schema}`).then(
      () => undefined,
      (e: unknown) => {
        schemaReady = undefined;
        throw e;
      },
    );
    return schemaReady;
  };
  return {
    dialect: 'postgres',
    location: redactUrl(url) + (opts.schema ? ` (schema ${opts.schema})` : ''),
    query: async (sql, params) => (await ready(), q.query(sql, params)),
    run: async (sql, params) => (await ready(), q.run(sql, params)),
    exec: async (sql) => (await ready(), q.exec(sql)),
    lock: async () => {
      throw new Error('lock() needs a transaction');
    },
    async transaction(fn) {
      await ready();
      return inTransaction(pool, (client) => fn(querier(client)));
    },
    close: () => (closed ??= pool.end()),
  };
}
