/**
 * The little a store needs from a database: run SQL written with `?` placeholders, and run a function in a
 * transaction. Two adapters implement it (sqlite.ts, postgres.ts); everything else is shared (sql-store.ts).
 * @module
 */

/** A value bound to a placeholder. */
export type Param = string | number | null;

/** Runs statements, inside or outside a transaction. */
export interface Querier {
  /** Rows of a SELECT (or of a statement with RETURNING). */
  query(sql: string, params: readonly Param[]): Promise<Record<string, unknown>[]>;
  /** Runs a statement; returns the number of rows it changed. */
  run(sql: string, params: readonly Param[]): Promise<number>;
  /** Runs one or more statements without parameters (DDL). */
  exec(sql: string): Promise<void>;
  /**
   * Serialises writers on `key` until the transaction ends (PostgreSQL: transaction-scoped advisory lock;
   * SQLite: nothing to do, `BEGIN IMMEDIATE` already serialises writers).
   */
  lock(key: string): Promise<void>;
}

/** A database connection (or pool). */
export interface Driver extends Querier {
  readonly dialect: 'sqlite' | 'postgres';
  /** Where it is, without any password. */
  readonly location: string;
  /** Runs `fn` in a transaction: commits when it resolves, rolls back when it throws. */
  transaction<T>(fn: (tx: Querier) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}
