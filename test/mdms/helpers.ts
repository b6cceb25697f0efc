/**
 * Shared fixtures of the MDMS tests: the two store back ends (SQLite in a temp file, PostgreSQL in a schema of
 * its own), aggregate builders, and a TCP proxy that can cut a database connection.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { BillingAggregate, NeighbourhoodAggregate } from '../../protocol/aggregate.js';
import { openStore, type OpenStoreOptions } from '../../mdms/store/index.js';
import type { Store } from '../../mdms/store/types.js';

/** The development/CI PostgreSQL (trust auth); override with MDMS_TEST_PG. */
export const PG_URL = process.env.MDMS_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/test';
export const IN_CI = process.env.CI === 'true';

/** True if PostgreSQL answers within 3 s. */
export async function pgReachable(url = PG_URL): Promise<boolean> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
    await c.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Result of the reachability check, decided once per test file. */
export const PG_UP = await pgReachable();
/** Run PostgreSQL tests when it is up, and also when it is down in CI (so that they fail there). */
export const RUN_PG = PG_UP || IN_CI;

/** A fresh schema name for one test. */
export function uniqueSchema(): string {
  return `mdms_test_${process.pid}_${randomBytes(4).toString('hex')}`;
}

/** Drops a test schema. */
export async function dropSchema(schema: string, url = PG_URL): Promise<void> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** A back end the shared suites run against. */
export interface Backend {
  name: 'sqlite' | 'postgres';
  /** Runs in this environment (PostgreSQL: reachable, or CI where unreachable must fail). */
  enabled: boolean;
  /** Opens a new, empty store; `cleanup` removes everything it created. */
  open(opts?: OpenStoreOptions): Promise<{ store: Store; db: string; reopen(o?: OpenStoreOptions): Promise<Store>; cleanup(): Promise<void> }>;
}

export const BACKENDS: Backend[] = [
  {
    name: 'sqlite',
    enabled: true,
    async open(opts = {}) {
      const dir = mkdtempSync(join(tmpdir(), 'mdms-test-'));
      const db = join(dir, 'mdms.sqlite');
      const opened: Store[] = [];
      const reopen = async (o: OpenStoreOptions = opts) => {
        const s = await openStore(db, o);
        opened.push(s);
        return s;
      };
      const store = await reopen();
      return {
        store,
        db,
        reopen,
        async cleanup() {
          for (const s of opened) await s.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  },
  {
    name: 'postgres',
    enabled: RUN_PG,
    async open(opts = {}) {
      if (!PG_UP) throw new Error(`PostgreSQL is not reachable at ${PG_URL} (CI=true: PostgreSQL tests must not be skipped)`);
      const schema = uniqueSchema();
      const opened: Store[] = [];
      const reopen = async (o: OpenStoreOptions = opts) => {
        const s = await openStore(PG_URL, { ...o, schema });
        opened.push(s);
        return s;
      };
      const store = await reopen();
      return {
        store,
        db: PG_URL,
        reopen,
        async cleanup() {
          for (const s of opened) await s.close();
          await dropSchema(schema);
        },
      };
    },
  },
];

/** A neighbourhood aggregate (15-minute interval by default). */
export function nbAgg(p: Partial<NeighbourhoodAggregate> = {}): NeighbourhoodAggregate {
  const start = p.start ?? 1_714_521_600;
  return { kind: 'neighbourhood', key: 'nb1', start, end: start + 900, revision: 0, meters: 5, energyWh: 1234, ...p };
}

/** A billing aggregate (one day by default). */
export function billingAgg(p: Partial<BillingAggregate> = {}): BillingAggregate {
  const start = p.start ?? 1_714_521_600;
  return { kind: 'billing', key: 'hh1', start, end: start + 86_400, revision: 0, bands: { peak: 3000, offpeak: 4500 }, ...p };
}

/** Creates a temp dir, returning it and its remover. */
export function tempDir(prefix = 'mdms-test-'): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * A TCP proxy on a free port to `target`, which can be cut (closes the listener and every connection: the
 * database is "unreachable") and restored on the same port.
 */
export class TcpProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  async start(): Promise<this> {
    const server = createServer((client) => {
      const upstream = connect(this.target.port, this.target.host);
      this.sockets.add(client).add(upstream);
      const drop = (): void => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
    return this;
  }

  /** Refuses new connections and breaks the open ones. */
  async cut(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    for (const sock of this.sockets) sock.destroy();
    this.sockets.clear();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** Listens again on the same port. */
  restore(): Promise<this> {
    return this.start();
  }
}
