/**
 * The partition lease: one active PES per partition, decided by a row in PostgreSQL.
 *
 * `pes_lease (part, holder, epoch, expires_at)`: the holder is the instance (a random id per process), the
 * epoch a fencing token that grows by one with every change of holder, `expires_at` the database's clock plus
 * the time to live (so the instances' clocks do not matter). A candidate takes the lease only when it has
 * expired (one `INSERT … ON CONFLICT DO UPDATE … WHERE expires_at < now()`, atomic); the holder renews it every
 * `ttl / 3`. Every state write runs {@link Lease.fence} in its own transaction: it locks the row (`FOR SHARE`,
 * so a takeover waits for the write to finish) and refuses the write with {@link LeaseLostError} unless the
 * epoch is still this instance's. A paused old leader that resumes after a takeover therefore cannot write a
 * byte; it learns it lost the lease from that refusal (or from a failed renewal) and steps down.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type pg from 'pg';

/**
 * Raised when this instance no longer holds its partition's lease (another took over, or it could not renew).
 * @example
 * ```ts
 * try { await state.commit(cp, []); } catch (e) { if (e instanceof LeaseLostError) process.exit(3); }
 * ```
 */
export class LeaseLostError extends Error {
  override name = 'LeaseLostError';
}

/** The lease table's DDL (a migration of pes/pg-state.ts). */
export const LEASE_DDL = `
CREATE TABLE pes_lease (
  part TEXT COLLATE "C" PRIMARY KEY,
  holder TEXT NOT NULL,
  epoch BIGINT NOT NULL CHECK (epoch >= 1),
  expires_at TIMESTAMPTZ NOT NULL,
  acquired_at TIMESTAMPTZ NOT NULL DEFAULT now()
);`;

/** Anything that runs a query: a pool or a client inside a transaction. */
type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.PoolClient, 'query'>;

/**
 * A process-unique holder id: host, pid and 6 random bytes (readable in `pes_lease` by an operator).
 * @example
 * ```ts
 * holderId(); // 'db1:4242:9f0c1a2b3c4d'
 * ```
 */
export function holderId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(6).toString('hex')}`;
}

/**
 * One instance's claim on one partition.
 * @example
 * ```ts
 * const lease = new Lease(pool, 'north', { ttlMs: 10_000 });
 * while (!(await lease.acquire())) await sleep(lease.pollMs);
 * lease.keep((e) => { log.error(e.message); process.exit(3); }); // renews every ttl / 3
 * ```
 */
export class Lease {
  readonly holder: string;
  readonly ttlMs: number;
  /** How often a standby tries to take the lease, and how often the holder renews it: ttl / 3. */
  readonly pollMs: number;
  private current: number | null = null;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly pool: Pick<pg.Pool, 'query'>,
    readonly partition: string,
    opts: { ttlMs?: number; holder?: string } = {},
  ) {
    this.ttlMs = opts.ttlMs ?? 10_000;
    if (!Number.isSafeInteger(this.ttlMs) || this.ttlMs < 300) throw new RangeError('lease ttl must be an integer >= 300 ms');
    this.pollMs = Math.max(100, Math.floor(this.ttlMs / 3));
    this.holder = opts.holder ?? holderId();
  }

  /** The fencing token while held, else null. */
  get epoch(): number | null {
    return this.current;
  }

  /** Takes the lease if it is free or expired; returns the new epoch, or null if another instance holds it. */
  async acquire(): Promise<number | null> {
    const r = await this.pool.query(
      `INSERT INTO pes_lease (part, holder, epoch, expires_at) VALUES ($1, $2, 1, now() + $3 * interval '1 millisecond')
       ON CONFLICT (part) DO UPDATE SET holder = EXCLUDED.holder, epoch = pes_lease.epoch + 1, expires_at = EXCLUDED.expires_at, acquired_at = now()
       WHERE pes_lease.expires_at < now()
       RETURNING epoch`,
      [this.partition, this.holder, this.ttlMs],
    );
    this.current = r.rows.length ? Number(r.rows[0].epoch) : null;
    return this.current;
  }

  /** Extends the lease by the ttl; throws {@link LeaseLostError} if another instance took it meanwhile. */
  async renew(): Promise<void> {
    const epoch = this.current;
    if (epoch === null) throw new LeaseLostError(`partition ${this.partition}: lease not held`);
    const r = await this.pool.query(
      `UPDATE pes_lease SET expires_at = now() + $4 * interval '1 millisecond' WHERE part = $1 AND holder = $2 AND epoch = $3`,
      [this.partition, this.holder, epoch, this.ttlMs],
    );
    if (r.rowCount !== 1) {
      if (this.current === epoch) this.current = null;
      throw new LeaseLostError(`partition ${this.partition}: lease epoch ${epoch} was taken over by another instance`);
    }
  }

  /**
   * Inside a write transaction: locks the lease row and throws {@link LeaseLostError} unless this instance
   * still holds the epoch it acquired. Call it first in every transaction that changes the partition's state.
   */
  async fence(tx: Queryable): Promise<number> {
    const mine = this.current;
    if (mine === null) throw new LeaseLostError(`partition ${this.partition}: write refused, lease not held`);
    const r = await tx.query('SELECT holder, epoch FROM pes_lease WHERE part = $1 FOR SHARE', [this.partition]);
    const row = r.rows[0] as { holder: string; epoch: string | number } | undefined;
    if (!row || row.holder !== this.holder || Number(row.epoch) !== mine) {
      this.current = null;
      throw new LeaseLostError(`partition ${this.partition}: write refused, epoch ${mine} is fenced off (now ${row ? Number(row.epoch) : 'none'})`);
    }
    return mine;
  }

  /**
   * Renews every {@link pollMs} in the background; calls `lost` once (and stops) when a renewal is refused, or
   * when renewals have failed (database unreachable) for longer than the ttl, since another instance may then
   * hold the lease.
   */
  keep(lost: (e: Error) => void): void {
    let okAt = Date.now();
    const tick = async () => {
      try {
        await this.renew();
        okAt = Date.now();
      } catch (e) {
        if (e instanceof LeaseLostError || Date.now() - okAt >= this.ttlMs) {
          this.stop();
          this.current = null;
          return lost(e instanceof LeaseLostError ? e : new LeaseLostError(`partition ${this.partition}: lease not renewed for ${this.ttlMs} ms: ${(e as Error).message}`));
        }
      }
      if (this.timer) this.timer = setTimeout(() => void tick(), this.pollMs);
    };
    this.timer = setTimeout(() => void tick(), this.pollMs);
  }

  /** Stops renewing (the lease then expires after its ttl). */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Stops renewing and gives the lease up at once (a clean stop), so a standby need not wait for the ttl. */
  async release(): Promise<void> {
    this.stop();
    if (this.current === null) return;
    const epoch = this.current;
    this.current = null;
    await this.pool.query(`UPDATE pes_lease SET expires_at = now() - interval '1 millisecond' WHERE part = $1 AND holder = $2 AND epoch = $3`, [this.partition, this.holder, epoch]);
  }
}
