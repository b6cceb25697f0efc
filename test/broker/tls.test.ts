/**
 * TLS (issue 15 item 7): the embedded broker with `--tls-cert/--tls-key` speaks MQTT over TLS and WebSocket
 * over TLS on its two ports, with its ACL unchanged; the MDMS web app and the household app answer over
 * HTTPS. The certificates are made by the openssl CLI for each run (test/broker/tls-certs.ts).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerHandle } from '../../broker/broker.js';
import { readTlsFlags } from '../../lib/flags.js';
import { hashPassword } from '../../lib/password.js';
import { startMdmsWeb } from '../../mdms/web/server.js';
import { startStack } from '../ucs/helpers.js';
import { makeTestCerts, type TestCerts } from './tls-certs.js';

const dir = mkdtempSync(join(tmpdir(), 'sm-tls-'));
let certs: TestCerts;
const clients: MqttClient[] = [];

beforeAll(() => {
  certs = makeTestCerts(dir);
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true)));
  rmSync(dir, { recursive: true, force: true });
});

/** A request over HTTPS trusting only the test CA (GET, or POST with a JSON body): status, body, headers. */
function httpsGet(url: string, ca: Buffer | undefined, json?: unknown): Promise<{ status: number; body: string; headers: import('node:http').IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, method: json === undefined ? 'GET' : 'POST', headers: json === undefined ? {} : { 'content-type': 'application/json' } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += String(c)));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(json === undefined ? undefined : JSON.stringify(json));
  });
}

describe('the embedded broker over TLS', () => {
  let broker: BrokerHandle;
  const users = {
    version: 1 as const,
    users: {
      pes: { scrypt: hashPassword('pes password'), publish: ['sm/v1/household/+/readings'], subscribe: [] },
      'household-h1': { scrypt: hashPassword('h1 password'), publish: [], subscribe: ['sm/v1/household/h1/#'] },
    },
  };
  const connect = async (url: string, o: IClientOptions) => {
    const c = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...o });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    broker = await startBroker({ users, port: 0, wsPort: 0, tls: { cert: certs.cert, key: certs.key }, logger: pino({ level: 'silent' }) });
  });
  afterAll(() => broker?.close());

  it('announces mqtts:// and wss:// URLs', () => {
    expect(broker.url).toBe(`mqtts://127.0.0.1:${broker.port}`);
    expect(broker.wsUrl).toBe(`wss://127.0.0.1:${broker.wsPort}`);
  });

  it('a client trusting the CA connects over mqtts, another over wss, and a message crosses between them; the ACL still holds', async () => {
    const household = await connect(broker.url, { ca: certs.ca, username: 'household-h1', password: 'h1 password', clientId: 'household-h1-tls' });
    expect((household.stream as unknown as { encrypted?: boolean }).encrypted).toBe(true);
    const granted = await household.subscribeAsync(['sm/v1/household/h1/readings', 'sm/v1/household/h2/readings'], { qos: 1 }).then(
      (g) => g.map((x) => x.qos),
      (e: { packet?: { granted?: number[] } }) => e.packet?.granted ?? [],
    );
    expect(granted).toEqual([1, 0x80]);
    const got = new Promise<string>((resolve) => household.once('message', (_t, p) => resolve(String(p))));
    const pes = await connect(broker.wsUrl!, { ca: certs.ca, username: 'pes', password: 'pes password', clientId: 'pes-tls' });
    await pes.publishAsync('sm/v1/household/h1/readings', 'sealed over wss', { qos: 1 });
    expect(await got).toBe('sealed over wss');
  });

  it('a client that does not trust the CA is refused by its own TLS check (the certificate is really verified)', async () => {
    await expect(connect(broker.url, { username: 'pes', password: 'pes password', clientId: 'pes-untrusted' })).rejects.toThrow(/self[- ]signed|unable to (get|verify)/i);
    await expect(connect(broker.wsUrl!, { username: 'pes', password: 'pes password', clientId: 'pes-untrusted-ws' })).rejects.toThrow(/self[- ]signed|unable to (get|verify)/i);
  });

  it('there is no plaintext MQTT on the TLS port: a plain CONNECT gets no CONNACK', async () => {
    const answer = await new Promise<Buffer>((resolve) => {
      const s = tcpConnect({ host: '127.0.0.1', port: broker.port }, () => {
        // MQTT 3.1.1 CONNECT, client id "x", clean session, keep-alive 60
        s.write(Buffer.from([0x10, 0x0d, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x01, 0x78]));
      });
      const chunks: Buffer[] = [];
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('close', () => resolve(Buffer.concat(chunks)));
      s.on('error', () => undefined);
      setTimeout(() => s.destroy(), 3000);
    });
    expect(answer[0]).not.toBe(0x20); // 0x20 would be a CONNACK; the TLS server answers with an alert or nothing
  });
});

describe('the web apps over HTTPS', () => {
  it('the MDMS web app serves HTTPS with --tls-cert/--tls-key, and its session cookie is Secure', async () => {
    const web = await startMdmsWeb({ db: join(dir, 'mdms.sqlite'), port: 0, https: { cert: certs.cert, key: certs.key }, logger: false });
    try {
      expect(web.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const r = await httpsGet(`${web.url}/healthz`, certs.ca);
      expect(r.status).toBe(200);
      await expect(httpsGet(`${web.url}/healthz`, undefined)).rejects.toThrow(/self[- ]signed|unable to (get|verify)/i);
      await web.web.users.create({ username: 'admin', roles: ['admin'], password: 'a long enough admin passphrase' });
      const login = await httpsGet(`${web.url}/api/v1/session`, certs.ca, { username: 'admin', password: 'a long enough admin passphrase' });
      expect(login.status).toBe(200);
      const cookie = String(login.headers['set-cookie']);
      expect(cookie).toMatch(/HttpOnly/i);
      expect(cookie).toMatch(/;\s*Secure/i); // loopback over plain HTTP would not be Secure (render.ts): TLS is seen
    } finally {
      await web.close();
    }
  });

  it('the household app serves HTTPS, and its page lets the browser reach the wss broker URL it was given (CSP connect-src)', async () => {
    const stack = await startStack({ ucs: { https: { cert: certs.cert, key: certs.key }, brokerWsUrl: 'wss://127.0.0.1:8443' } });
    try {
      expect(stack.ucs.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const health = await httpsGet(`${stack.ucs.url}/healthz`, certs.ca);
      expect(health.status).toBe(200);
      const page = await httpsGet(`${stack.ucs.url}/`, certs.ca);
      expect(page.status).toBe(200);
      expect(page.headers['content-security-policy']).toMatch(/connect-src 'self' wss:\/\/127\.0\.0\.1:8443/);
    } finally {
      await stack.close();
    }
  }, 60_000);
});

describe('--tls-cert/--tls-key', () => {
  it('go together, and an unreadable file is a usage error naming the flag', () => {
    expect(readTlsFlags({})).toBeUndefined();
    expect(() => readTlsFlags({ tlsCert: certs.certFile })).toThrow(/--tls-cert and --tls-key go together/);
    expect(() => readTlsFlags({ tlsCert: certs.certFile, tlsKey: join(dir, 'missing.key') })).toThrow(/cannot read --tls-key .*missing\.key: ENOENT/);
    expect(readTlsFlags({ tlsCert: certs.certFile, tlsKey: certs.keyFile })).toEqual({ cert: certs.cert, key: certs.key });
  });
});

/** Runs `smartermeter <args>`, resolves with the first match of `ready` in its output, then stops it (SIGTERM). */
async function runUntil(args: string[], ready: RegExp, use: (m: RegExpMatchArray) => Promise<void>): Promise<void> {
  const child = spawn(process.execPath, [resolve(import.meta.dirname, '../../bin/smartermeter.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let out = '';
  try {
    const m = await new Promise<RegExpMatchArray>((ok, fail) => {
      const look = (c: Buffer) => {
        out += String(c);
        const hit = ready.exec(out);
        if (hit) ok(hit);
      };
      child.stdout!.on('data', look);
      child.stderr!.on('data', look);
      child.once('exit', (code) => fail(new Error(`smartermeter ${args[0]} exited ${code}:\n${out}`)));
      setTimeout(() => fail(new Error(`smartermeter ${args[0]} did not print ${ready} in 60 s:\n${out}`)), 60_000);
    });
    await use(m);
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

describe('the commands take --tls-cert/--tls-key', () => {
  it('`smartermeter broker` listens with mqtts and wss', async () => {
    const keys = join(dir, 'cli-keys');
    mkdirSync(join(keys, 'broker'), { recursive: true });
    const users = { version: 1, users: { mdms: { scrypt: hashPassword('mdms password'), publish: [], subscribe: ['sm/v1/agg/#'] } } };
    writeFileSync(join(keys, 'broker/users.json'), JSON.stringify(users));
    await runUntil(['broker', '--keys', keys, '--port', '0', '--ws-port', '0', '--tls-cert', certs.certFile, '--tls-key', certs.keyFile], /broker listening on (mqtts:\/\/\S+) and (wss:\/\/\S+)/, async (m) => {
      for (const url of [m[1]!, m[2]!]) {
        const c = await mqtt.connectAsync(url, { ca: certs.ca, username: 'mdms', password: 'mdms password', clientId: `mdms-cli-${url.slice(0, 3)}`, reconnectPeriod: 0 });
        expect(c.connected, url).toBe(true);
        await c.endAsync();
      }
    });
  }, 90_000);

  it('`smartermeter mdms web` serves HTTPS', async () => {
    await runUntil(['mdms', 'web', '--db', join(dir, 'cli-mdms.sqlite'), '--http', '0', '--tls-cert', certs.certFile, '--tls-key', certs.keyFile], /"url":"(https:\/\/[^"]+)"/, async (m) => {
      expect((await httpsGet(`${m[1]}/healthz`, certs.ca)).status).toBe(200);
    });
  }, 90_000);
});
