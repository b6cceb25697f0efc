/**
 * A durable aedes persistence in one SQLite file (better-sqlite3, WAL), so that a broker killed with
 * `kill -9` keeps its sessions: the subscriptions of `clean: false` clients, the QoS 1/2 messages queued or
 * in flight to them, retained messages, wills and inbound QoS 2 state. aedes' default persistence is in
 * memory and loses all of it; no maintained SQLite or serverless package exists for aedes 1.x
 * (aedes-persistence-level is not published for it), hence this one.
 *
 * It implements the async interface of aedes-persistence 11 (the one aedes 1.x calls) and passes that
 * package's conformance suite `aedes-persistence/abstract.js` (test/crash/persistence.test.ts).
 * Subscriptions and retained messages are also kept in aedes-persistence's in-memory implementation,
 * which supplies the topic trie that `subscriptionsByTopic` needs on every publish; the file is the
 * truth, and is loaded back into memory by `setup`.
 *
 * Besides the aedes interface it keeps a *publish journal* (see {@link SqlitePersistence.journal}):
 * aedes answers a QoS 1 PUBLISH with PUBACK before it enqueues the message for its subscribers
 * (aedes 1.2 lib/handlers/publish.js, `case 1`), so a crash in between would lose a message the
 * publisher already dropped. broker/broker.ts journals each QoS 1 message before aedes acknowledges it
 * and clears the entry once aedes has enqueued it; the broker re-publishes what the journal still holds at
 * start-up (a duplicate at worst, which every consumer here discards by its idempotency key).
 *
 * Durability: every write is durable against a process crash (WAL). Against a power cut: the journal entry
 * of each QoS > 0 message is fsynced (`synchronous = FULL`, group-committed per event-loop turn) before
 * aedes acknowledges it, and so are subscriptions, wills and retained messages; the enqueueing, message-id
 * updates and deletions are not (`NORMAL`): SQLite recovers a prefix of the WAL, so a lost enqueue comes
 * with a lost journal deletion, and the journal re-publishes the message (a duplicate at worst).
 * @module
 */
import { privateFile } from '../lib/private-file.js';
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import { deserialize, serialize } from 'node:v8';
import Database from 'better-sqlite3';

const require = createRequire(import.meta.url);

/** A packet as aedes hands it to a persistence (mqtt-packet fields plus brokerId/brokerCounter). */
export type StoredPacket = Record<string, unknown> & { messageId?: number; brokerId?: string; brokerCounter?: number; topic?: string };
interface ClientRef {
  id: string;
}
interface Sub {
  topic: string;
  qos: number;
  [k: string]: unknown;
}
/** The part of aedes-persistence's in-memory implementation used here (subscriptions, retained). */
interface MemoryPersistence {
  setup(broker: unknown): Promise<void>;
  storeRetained(packet: StoredPacket): Promise<void>;
  createRetainedStream(pattern: string): Readable;
  createRetainedStreamCombi(patterns: string[]): Readable;
  addSubscriptions(client: ClientRef, subs: Sub[]): Promise<void>;
  removeSubscriptions(client: ClientRef, topics: string[]): Promise<void>;
  subscriptionsByClient(client: ClientRef): Promise<Sub[]>;
  countOffline(): Promise<{ subsCount: number; clientsCount: number }>;
  subscriptionsByTopic(topic: string): Promise<(Sub & { clientId: string })[]>;
  cleanSubscriptions(client: ClientRef): Promise<void>;
  getClientList(topic: string): Readable;
}
const Memory = require('aedes-persistence/asyncPersistence.js') as new () => MemoryPersistence;
const Packet = require('aedes-packet') as new (original: object, broker?: unknown) => StoredPacket;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS subscriptions (id INTEGER PRIMARY KEY, client_id TEXT NOT NULL, topic TEXT NOT NULL, sub BLOB NOT NULL, UNIQUE (client_id, topic));
CREATE TABLE IF NOT EXISTS retained (topic TEXT PRIMARY KEY, packet BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outgoing (id INTEGER PRIMARY KEY AUTOINCREMENT, client_id TEXT NOT NULL, broker_id TEXT, broker_counter INTEGER, message_id INTEGER, packet BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS outgoing_client ON outgoing (client_id, id);
CREATE TABLE IF NOT EXISTS incoming (client_id TEXT NOT NULL, message_id INTEGER NOT NULL, packet BLOB NOT NULL, PRIMARY KEY (client_id, message_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS wills (client_id TEXT PRIMARY KEY, packet BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal (id INTEGER PRIMARY KEY AUTOINCREMENT, packet BLOB NOT NULL);
`;

const pack = (p: object): Buffer => serialize(p);
const unpack = (b: Buffer): StoredPacket => deserialize(b) as StoredPacket;
const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const int = (v: unknown): number | null => (typeof v === 'number' && Number.isSafeInteger(v) ? v : null);

/**
 * The SQLite-backed aedes persistence. Pass it as `persistence` to `Aedes.createBroker` (aedes calls
 * `setup`), or use `startBroker({ stateFile })`, which also wires the publish journal.
 * @example
 * ```ts
 * const persistence = new SqlitePersistence('state/broker.sqlite');
 * const aedes = await Aedes.createBroker({ persistence });
 * ```
 */
export class SqlitePersistence {
  readonly path: string;
  private readonly db: Database.Database;
  private readonly mem = new Memory();
  private broker: { id: string } | undefined;
  private destroyed = false;
  private synchronous: 'FULL' | 'NORMAL' = 'FULL';
  private readonly pending: { fn: () => void; resolve: () => void; reject: (e: Error) => void }[] = [];
  private readonly s;

  /** Opens (creating if needed, mode 0600) the state file; `':memory:'` for tests. */
  constructor(path: string) {
    if (typeof path !== 'string' || path.length === 0) throw new TypeError('broker state file must be a non-empty path');
    this.path = path;
    try {
      privateFile(path);
      this.db = new Database(path);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.exec(SCHEMA);
    } catch (e) {
      throw new Error(`cannot open broker state file ${path}: ${(e as Error).message}`);
    }
    const db = this.db;
    this.s = {
      putSub: db.prepare<[string, string, Buffer]>('INSERT INTO subscriptions (client_id, topic, sub) VALUES (?, ?, ?) ON CONFLICT (client_id, topic) DO UPDATE SET sub = excluded.sub'),
      delSub: db.prepare<[string, string]>('DELETE FROM subscriptions WHERE client_id = ? AND topic = ?'),
      delSubs: db.prepare<[string]>('DELETE FROM subscriptions WHERE client_id = ?'),
      allSubs: db.prepare<[], { client_id: string; sub: Buffer }>('SELECT client_id, sub FROM subscriptions ORDER BY id'),
      putRetained: db.prepare<[string, Buffer]>('INSERT OR REPLACE INTO retained (topic, packet) VALUES (?, ?)'),
      delRetained: db.prepare<[string]>('DELETE FROM retained WHERE topic = ?'),
      allRetained: db.prepare<[], { packet: Buffer }>('SELECT packet FROM retained'),
      enqueue: db.prepare<[string, string | null, number | null, number | null, Buffer]>(
        'INSERT INTO outgoing (client_id, broker_id, broker_counter, message_id, packet) VALUES (?, ?, ?, ?, ?)',
      ),
      findOut: db.prepare<[string, string | null, number | null, string | null, number | null], { id: number; broker_id: string | null; broker_counter: number | null; packet: Buffer }>(
        // The in-memory implementation's rule, in queue order: the same (brokerId, brokerCounter) updates the
        // message id; a packet of another broker with the same message id is replaced (e.g. by its PUBREL).
        'SELECT id, broker_id, broker_counter, packet FROM outgoing WHERE client_id = ? AND ((broker_id IS ? AND broker_counter IS ?) OR (broker_id IS NOT ? AND message_id IS ?)) ORDER BY id LIMIT 1',
      ),
      updateOut: db.prepare<[string | null, number | null, number | null, Buffer, number]>('UPDATE outgoing SET broker_id = ?, broker_counter = ?, message_id = ?, packet = ? WHERE id = ?'),
      byMessageId: db.prepare<[string, number], { id: number; packet: Buffer }>('SELECT id, packet FROM outgoing WHERE client_id = ? AND message_id = ? ORDER BY id LIMIT 1'),
      delOut: db.prepare<[number]>('DELETE FROM outgoing WHERE id = ?'),
      outgoing: db.prepare<[string], { packet: Buffer }>('SELECT packet FROM outgoing WHERE client_id = ? ORDER BY id'),
      putIncoming: db.prepare<[string, number, Buffer]>('INSERT OR REPLACE INTO incoming (client_id, message_id, packet) VALUES (?, ?, ?)'),
      getIncoming: db.prepare<[string, number], { packet: Buffer }>('SELECT packet FROM incoming WHERE client_id = ? AND message_id = ?'),
      delIncoming: db.prepare<[string, number]>('DELETE FROM incoming WHERE client_id = ? AND message_id = ?'),
      cleanIncoming: db.prepare<[string]>('DELETE FROM incoming WHERE client_id = ?'),
      putWill: db.prepare<[string, Buffer]>('INSERT OR REPLACE INTO wills (client_id, packet) VALUES (?, ?)'),
      getWill: db.prepare<[string], { packet: Buffer }>('SELECT packet FROM wills WHERE client_id = ?'),
      delWill: db.prepare<[string]>('DELETE FROM wills WHERE client_id = ?'),
      allWills: db.prepare<[], { packet: Buffer }>('SELECT packet FROM wills ORDER BY client_id'),
      journal: db.prepare<[Buffer]>('INSERT INTO journal (packet) VALUES (?)'),
      unjournal: db.prepare<[number]>('DELETE FROM journal WHERE id = ?'),
      journaled: db.prepare<[], { id: number; packet: Buffer }>('SELECT id, packet FROM journal ORDER BY id'),
    };
  }

  /**
   * Group commit: journal entries requested in the same event-loop turn share one transaction (one fsync);
   * aedes handles the packets of one socket read concurrently, and several publishers send at once.
   */
  private commitSoon(fn: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ fn, resolve, reject });
      if (this.pending.length === 1) setImmediate(() => this.commitPending());
    });
  }

  private commitPending(): void {
    const batch = this.pending.splice(0);
    if (batch.length === 0) return;
    try {
      if (this.destroyed) throw new Error('broker state file is closed');
      this.write(true, () => {
        for (const b of batch) b.fn();
      });
    } catch (e) {
      for (const b of batch) b.reject(e as Error);
      return;
    }
    for (const b of batch) b.resolve();
  }

  /** Runs `fn` in one transaction, durable (`FULL`) or crash-safe only (`NORMAL`: losing it only redelivers). */
  private write<T>(durable: boolean, fn: () => T): T {
    const want = durable ? 'FULL' : 'NORMAL';
    if (this.synchronous !== want) {
      this.db.pragma(`synchronous = ${want}`);
      this.synchronous = want;
    }
    return this.db.transaction(fn)();
  }

  /** Called by aedes with itself; loads the file's subscriptions and retained messages into memory. */
  async setup(broker: { id: string }): Promise<void> {
    this.broker = broker;
    await this.mem.setup(broker);
    const byClient = new Map<string, Sub[]>();
    for (const r of this.s.allSubs.all()) {
      let list = byClient.get(r.client_id);
      if (!list) byClient.set(r.client_id, (list = []));
      list.push(unpack(r.sub) as unknown as Sub);
    }
    for (const [id, subs] of byClient) await this.mem.addSubscriptions({ id }, subs);
    for (const r of this.s.allRetained.all()) await this.mem.storeRetained(unpack(r.packet));
  }

  async storeRetained(packet: StoredPacket): Promise<void> {
    const p = { ...packet };
    const empty = p.payload === undefined || (p.payload as { length: number }).length === 0;
    this.write(!empty, () => (empty ? this.s.delRetained.run(String(p.topic)) : this.s.putRetained.run(String(p.topic), pack(p))));
    await this.mem.storeRetained(p);
  }

  createRetainedStream(pattern: string): Readable {
    return this.mem.createRetainedStream(pattern);
  }

  createRetainedStreamCombi(patterns: string[]): Readable {
    return this.mem.createRetainedStreamCombi(patterns);
  }

  async addSubscriptions(client: ClientRef, subs: Sub[]): Promise<void> {
    this.write(true, () => {
      for (const sub of subs) this.s.putSub.run(client.id, sub.topic, pack(subRecord(sub)));
    });
    await this.mem.addSubscriptions(client, subs);
  }

  async removeSubscriptions(client: ClientRef, topics: string[]): Promise<void> {
    this.write(false, () => {
      for (const t of topics) this.s.delSub.run(client.id, t);
    });
    await this.mem.removeSubscriptions(client, topics);
  }

  subscriptionsByClient(client: ClientRef): Promise<Sub[]> {
    return this.mem.subscriptionsByClient(client);
  }

  countOffline(): Promise<{ subsCount: number; clientsCount: number }> {
    return this.mem.countOffline();
  }

  subscriptionsByTopic(topic: string): Promise<(Sub & { clientId: string })[]> {
    return this.mem.subscriptionsByTopic(topic);
  }

  async cleanSubscriptions(client: ClientRef): Promise<void> {
    this.write(false, () => this.s.delSubs.run(client.id));
    await this.mem.cleanSubscriptions(client);
  }

  getClientList(topic: string): Readable {
    return this.mem.getClientList(topic);
  }

  async outgoingEnqueue(sub: { clientId: string }, packet: StoredPacket): Promise<void> {
    await this.outgoingEnqueueCombi([sub], packet);
  }

  /** Queues `packet` for every subscription's client, in one transaction. */
  async outgoingEnqueueCombi(subs: { clientId: string }[], packet: StoredPacket): Promise<void> {
    if (!subs || subs.length === 0) return;
    const p = new Packet(packet);
    const bytes = pack(p);
    // Written at once (aedes stamps a message's brokerCounter before this call and its clients drop a counter
    // lower than one they already got, so enqueueing must not let a later message overtake), and without an
    // fsync: a client's QoS > 0 message is already durable in the journal, which is cleared only after this.
    this.write(false, () => {
      for (const sub of subs) this.s.enqueue.run(sub.clientId, str(p.brokerId), int(p.brokerCounter), int(p.messageId), bytes);
    });
  }

  /** Resolves with nothing: aedes treats a resolved value as an error (lib/client.js deliverQoS). */
  async outgoingUpdate(client: ClientRef, packet: StoredPacket): Promise<void> {
    const brokerId = str(packet.brokerId);
    const row = this.s.findOut.get(client.id, brokerId, int(packet.brokerCounter), brokerId, int(packet.messageId));
    if (!row) throw new Error('no such packet');
    const sameMessage = row.broker_id === brokerId && row.broker_counter === int(packet.brokerCounter);
    const stored = sameMessage ? { ...unpack(row.packet), messageId: packet.messageId } : packet;
    this.write(false, () => this.s.updateOut.run(str(stored.brokerId), int(stored.brokerCounter), int(stored.messageId), pack(stored), row.id));
  }

  async outgoingClearMessageId(client: ClientRef, packet: StoredPacket): Promise<StoredPacket | undefined> {
    const id = int(packet?.messageId);
    if (id === null) return undefined;
    const row = this.s.byMessageId.get(client.id, id);
    if (!row) return undefined;
    this.write(false, () => this.s.delOut.run(row.id));
    return unpack(row.packet);
  }

  outgoingStream(client: ClientRef): Readable {
    const rows = this.s.outgoing.all(client.id);
    return Readable.from(rows.map((r) => unpack(r.packet)));
  }

  async incomingStorePacket(client: ClientRef, packet: StoredPacket): Promise<void> {
    const p = new Packet(packet);
    p.messageId = packet.messageId;
    this.write(true, () => this.s.putIncoming.run(client.id, Number(packet.messageId), pack(p)));
  }

  async incomingGetPacket(client: ClientRef, packet: StoredPacket): Promise<StoredPacket> {
    const row = this.s.getIncoming.get(client.id, Number(packet.messageId));
    if (!row) throw new Error('no such packet');
    return unpack(row.packet);
  }

  async incomingDelPacket(client: ClientRef, packet: StoredPacket): Promise<void> {
    const r = this.write(false, () => this.s.delIncoming.run(client.id, Number(packet.messageId)));
    if (r.changes === 0) throw new Error('no such packet');
  }

  async cleanIncoming(client: ClientRef): Promise<void> {
    this.write(false, () => this.s.cleanIncoming.run(client.id));
  }

  async putWill(client: ClientRef, packet: StoredPacket): Promise<void> {
    packet.brokerId = this.broker?.id;
    packet.clientId = client.id;
    this.write(true, () => this.s.putWill.run(client.id, pack(packet)));
  }

  async getWill(client: ClientRef): Promise<StoredPacket | undefined> {
    const row = this.s.getWill.get(client.id);
    return row ? unpack(row.packet) : undefined;
  }

  async delWill(client: ClientRef): Promise<StoredPacket | undefined> {
    const row = this.s.getWill.get(client.id);
    this.write(false, () => this.s.delWill.run(client.id));
    return row ? unpack(row.packet) : undefined;
  }

  streamWill(brokers: Record<string, unknown> = {}): Readable {
    const wills = this.s.allWills.all().map((r) => unpack(r.packet));
    return Readable.from(wills.filter((w) => !brokers[String(w.brokerId)]));
  }

  /**
   * Makes an incoming QoS 1 message durable before it is acknowledged; resolves with the entry's id for
   * {@link unjournal} once it is (group-committed with the other writes of the same turn).
   * @example
   * ```ts
   * const id = await persistence.journal(packet); // then PUBACK
   * ```
   */
  async journal(packet: StoredPacket): Promise<number> {
    const p = { cmd: 'publish', topic: packet.topic, payload: packet.payload, qos: packet.qos, retain: packet.retain === true };
    const bytes = pack(p);
    let id = 0;
    await this.commitSoon(() => (id = Number(this.s.journal.run(bytes).lastInsertRowid)));
    return id;
  }

  /** Forgets a journal entry once its message is enqueued for every subscriber. */
  unjournal(id: number): void {
    this.write(false, () => this.s.unjournal.run(id));
  }

  /**
   * Messages acknowledged to their publisher whose enqueueing a crash interrupted, oldest first.
   * @example
   * ```ts
   * for (const { id, packet } of persistence.journaled()) aedes.publish(packet, () => persistence.unjournal(id));
   * ```
   */
  journaled(): { id: number; packet: StoredPacket }[] {
    return this.s.journaled.all().map((r) => ({ id: r.id, packet: unpack(r.packet) }));
  }

  /** Counts of what the file holds (for logs and tests). */
  stats(): { subscriptions: number; outgoing: number; retained: number; journal: number } {
    const n = (t: string) => (this.db.prepare(`SELECT count(*) AS n FROM ${t}`).get() as { n: number }).n;
    return { subscriptions: n('subscriptions'), outgoing: n('outgoing'), retained: n('retained'), journal: n('journal') };
  }

  async destroy(): Promise<void> {
    if (this.destroyed) throw new Error('destroyed called twice!');
    this.commitPending();
    this.destroyed = true;
    if (this.db.open) this.db.close();
  }
}

/** The stored form of a subscription: what the in-memory implementation keeps (MQTT 5 id only when present). */
function subRecord(sub: Sub): Sub {
  const r: Sub = { topic: sub.topic, qos: sub.qos, rh: sub.rh, rap: sub.rap, nl: sub.nl };
  if (sub.subscriptionIdentifier !== undefined) r.subscriptionIdentifier = sub.subscriptionIdentifier;
  return r;
}
