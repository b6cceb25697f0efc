/**
 * Mosquitto's files from provisioning (provision/mosquitto.ts): the password-file format against
 * `mosquitto_passwd` and PBKDF2, the ACL and configuration text, the files `provision` writes, and a real
 * Mosquitto started from them keeping a persistent session's QoS 1 message across a restart.
 * (The full user x topic matrix against that Mosquitto is test/security/acl-matrix.test.ts.)
 */
import { execFileSync } from 'node:child_process';
import { pbkdf2Sync } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MOSQUITTO_BIN, startMosquitto } from '../../bench/harness/crash/mosquitto.js';
import { loadCredentials, MOSQUITTO_ACL, MOSQUITTO_CONF, MOSQUITTO_DATA, MOSQUITTO_PASSWD } from '../../lib/keyset.js';
import { buildAcl } from '../../protocol/acl.js';
import { mosquittoAcl, mosquittoConf, mosquittoPasswd, mosquittoPasswdLine, queuedMessagesFor } from '../../provision/mosquitto.js';
import { provision } from '../../provision/keys.js';
import { freePort } from '../gateway/helpers.js';
import { makeTestCerts } from '../broker/tls-certs.js';
import { userInfo } from 'node:os';

const inCi = process.env.CI === 'true';
const haveMosquitto = existsSync(MOSQUITTO_BIN);

/** Checks a `$7$` line as Mosquitto does: PBKDF2-HMAC-SHA512 over the base64-decoded salt. */
function verifyLine(line: string, password: string): boolean {
  const m = /^([^:]+):\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(line);
  if (!m) return false;
  return pbkdf2Sync(password, Buffer.from(m[3]!, 'base64'), Number(m[2]), 64, 'sha512').toString('base64') === m[4];
}

describe('Mosquitto password file', () => {
  it('writes `user:$7$101$<12-byte salt>$<64-byte PBKDF2-SHA512>` lines that verify with the password only', () => {
    const line = mosquittoPasswdLine('pes', 'correct horse');
    const [, , iterations, salt, hash] = line.split('$');
    expect(line.startsWith('pes:$7$101$')).toBe(true);
    expect(iterations).toBe('101');
    expect(Buffer.from(salt!, 'base64')).toHaveLength(12);
    expect(Buffer.from(hash!, 'base64')).toHaveLength(64);
    expect(verifyLine(line, 'correct horse')).toBe(true);
    expect(verifyLine(line, 'correct horsf')).toBe(false);
    expect(mosquittoPasswdLine('pes', 'x')).not.toBe(mosquittoPasswdLine('pes', 'x')); // fresh salt each time
  });

  it.skipIf(!existsSync('/usr/bin/mosquitto_passwd'))("reads the same format mosquitto_passwd writes (so Mosquitto's reader is ours)", () => {
    const dir = mkdtempSync(join(tmpdir(), 'sm-mqpw-'));
    try {
      execFileSync('mosquitto_passwd', ['-c', '-b', join(dir, 'p'), 'alice', 's3cret']);
      const line = readFileSync(join(dir, 'p'), 'utf8').trim();
      expect(verifyLine(line, 's3cret')).toBe(true);
      expect(line.split('$').slice(0, 3)).toEqual(mosquittoPasswdLine('alice', 's3cret').split('$').slice(0, 3));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('one sorted line per user; refuses names and passwords that would break the file', () => {
    const text = mosquittoPasswd({ pes: 'a', mdms: 'b' });
    expect(text.split('\n').map((l) => l.split(':')[0])).toEqual(['mdms', 'pes', '']);
    expect(() => mosquittoPasswd({ 'a:b': 'x' })).toThrow(/bad broker user name/);
    expect(() => mosquittoPasswd({ 'a\nuser b': 'x' })).toThrow(/bad broker user name/);
    expect(() => mosquittoPasswd({ a: 'x\nb:$7$' })).toThrow(/single line/);
  });
});

describe('Mosquitto ACL file', () => {
  it('grants each user exactly its buildAcl filters: write to publish, read to subscribe', () => {
    const text = mosquittoAcl(buildAcl({ gateways: ['gw-n1'], households: ['h1'] }));
    const blocks = text.split('\n\n').slice(1);
    expect(blocks).toEqual([
      'user gateway-gw-n1\ntopic write sm/v1/frames/gw-n1',
      'user household-h1\ntopic read sm/v1/household/h1/#',
      'user mdms\ntopic read sm/v1/agg/#',
      'user pes\ntopic write sm/v1/agg/#\ntopic write sm/v1/household/+/readings\ntopic read sm/v1/frames/+\ntopic read sm/v1/pes/household-key/+',
      'user ucs\ntopic write sm/v1/pes/household-key/+\ntopic read sm/v1/household/+/readings\n',
    ]);
    expect(text).not.toMatch(/^pattern /m); // a pattern would apply to every user
  });

  it('refuses a filter that is not one, or that would inject a line', () => {
    expect(() => mosquittoAcl({ x: { publish: ['a/#/b'], subscribe: [] } })).toThrow(/bad topic filter/);
    expect(() => mosquittoAcl({ x: { publish: ['a\nuser y'], subscribe: [] } })).toThrow(/bad topic filter/);
  });
});

describe('mosquitto.conf', () => {
  const base = { passwordFile: '/k/passwd', aclFile: '/k/acl', persistenceDir: '/k/data', meters: 60, maxPacketBytes: 4 << 20 };

  it('no anonymous access, the files, persistence, a queue for a day of the fleet, a packet limit', () => {
    const conf = mosquittoConf(base);
    for (const line of ['allow_anonymous false', 'per_listener_settings false', 'password_file /k/passwd', 'acl_file /k/acl', 'persistence true', 'persistence_location /k/data/', `max_queued_messages ${60 * 60 * 24}`, `max_packet_size ${4 << 20}`, 'listener 1883 127.0.0.1']) {
      expect(conf.split('\n')).toContain(line);
    }
    expect(conf).not.toMatch(/message_size_limit|websockets|certfile/);
  });

  it('sizes the queue: one message per meter per minute for the hours asked, never below the default 1000', () => {
    expect(queuedMessagesFor(1000, 24)).toBe(1_440_000);
    expect(queuedMessagesFor(3, 1)).toBe(1000);
    expect(() => queuedMessagesFor(0, 1)).toThrow(RangeError);
  });

  it('TLS on both listeners when given a certificate', () => {
    const conf = mosquittoConf({ ...base, port: 8883, wsPort: 8443, host: '0.0.0.0', tls: { cert: '/c.pem', key: '/k.pem' } });
    expect(conf).toContain('listener 8883 0.0.0.0\nprotocol mqtt\ncertfile /c.pem\nkeyfile /k.pem');
    expect(conf).toContain('listener 8443 0.0.0.0\nprotocol websockets\ncertfile /c.pem\nkeyfile /k.pem');
  });

  it('refuses values that would inject configuration', () => {
    expect(() => mosquittoConf({ ...base, aclFile: '/k/acl\nallow_anonymous true' })).toThrow(/single-line/);
    expect(() => mosquittoConf({ ...base, host: '0.0.0.0\nallow_anonymous true' })).toThrow(/address/);
    expect(() => mosquittoConf({ ...base, port: 70000 })).toThrow(RangeError);
    expect(() => mosquittoConf({ ...base, user: 'root\nallow_anonymous true' })).toThrow(/account name/);
  });
});

describe('provision with a bad Mosquitto option', () => {
  it('fails before it makes any key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sm-mqbad-'));
    try {
      writeFileSync(join(dir, 'fleet.csv'), 'meter,household,neighbourhood,source\nm1,h1,nb1,synthetic:1\n');
      await expect(provision({ fleetCsv: join(dir, 'fleet.csv'), out: join(dir, 'keys'), rsaBits: 2048, paillierBits: 1024, mosquitto: { host: '0.0.0.0\nallow_anonymous true' } })).rejects.toThrow(/host must be an address/);
      expect(existsSync(join(dir, 'keys'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!haveMosquitto && !inCi)('provision writes them, and a real Mosquitto runs from them', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sm-mqprov-'));
  const keys = join(dir, 'keys');
  let port: number;
  beforeAll(async () => {
    port = await freePort();
    writeFileSync(join(dir, 'fleet.csv'), 'meter,household,neighbourhood,source\nm1,h1,nb1,synthetic:1\nm2,h2,nb1,synthetic:2\n');
    await provision({ fleetCsv: join(dir, 'fleet.csv'), out: keys, rsaBits: 2048, paillierBits: 1024, mosquitto: { port } });
  }, 120_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('passwd, acl and mosquitto.conf are 0600, the data folder 0700, the conf names them by absolute path', () => {
    for (const f of [MOSQUITTO_PASSWD, MOSQUITTO_ACL, MOSQUITTO_CONF]) expect(statSync(join(keys, f)).mode & 0o777, f).toBe(0o600);
    expect(statSync(join(keys, MOSQUITTO_DATA)).mode & 0o777).toBe(0o700);
    const conf = readFileSync(join(keys, MOSQUITTO_CONF), 'utf8');
    expect(conf).toContain(`password_file ${join(keys, MOSQUITTO_PASSWD)}\n`);
    expect(conf).toContain(`persistence_location ${join(keys, MOSQUITTO_DATA)}/\n`);
    expect(conf).toContain(`listener ${port} 127.0.0.1\n`);
    expect(readFileSync(join(keys, MOSQUITTO_PASSWD), 'utf8')).not.toContain(loadCredentials(keys, 'pes').password);
  });

  it('refuses anonymous clients, and keeps a persistent session with its queued QoS 1 message across a restart', async () => {
    const conf = join(keys, MOSQUITTO_CONF);
    const log = join(dir, 'mosquitto.log');
    const url = `mqtt://127.0.0.1:${port}`;
    let mq = await startMosquitto(conf, port, log);
    try {
      await expect(mqtt.connectAsync(url, { reconnectPeriod: 0, clientId: 'anon' })).rejects.toThrow(/Not authorized/);
      const pes = loadCredentials(keys, 'pes');
      const gw = loadCredentials(keys, 'gateway-gw-nb1');
      const sub = await mqtt.connectAsync(url, { ...pes, clientId: 'pes-1', clean: false, reconnectPeriod: 0 });
      await sub.subscribeAsync('sm/v1/frames/+', { qos: 1 });
      await sub.endAsync();
      const pub = await mqtt.connectAsync(url, { ...gw, clientId: 'gateway-gw-nb1', reconnectPeriod: 0 });
      await pub.publishAsync('sm/v1/frames/gw-nb1', 'queued while the PES was away', { qos: 1 });
      await pub.endAsync();
      await mq.stop('SIGTERM'); // Mosquitto saves its persistence on a clean stop
      mq = await startMosquitto(conf, port, log);
      // Listen before connecting: Mosquitto sends the queued message right behind the CONNACK.
      const back = mqtt.connect(url, { ...pes, clientId: 'pes-1', clean: false, reconnectPeriod: 0 });
      const got = await new Promise<string>((resolve, reject) => {
        back.once('message', (_t, p) => resolve(String(p)));
        back.once('error', reject);
        setTimeout(() => reject(new Error('the queued message did not survive the restart')), 5000);
      });
      await back.endAsync();
      expect(got).toBe('queued while the PES was away');
    } finally {
      await mq.stop();
    }
  }, 60_000);
});

describe.skipIf(!haveMosquitto && !inCi)('a Mosquitto conf with a certificate', () => {
  it('runs a real Mosquitto whose mqtts and wss listeners take a client that trusts the CA, with the ACL applied', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sm-mqtls-'));
    const certs = makeTestCerts(dir);
    const [port, wsPort] = [await freePort(), await freePort()];
    writeFileSync(join(dir, 'passwd'), mosquittoPasswd({ 'household-h1': 'h1 password' }), { mode: 0o600 });
    writeFileSync(join(dir, 'acl'), mosquittoAcl(buildAcl({ gateways: [], households: ['h1'] })), { mode: 0o600 });
    const conf = mosquittoConf({ passwordFile: join(dir, 'passwd'), aclFile: join(dir, 'acl'), persistenceDir: dir, meters: 1, maxPacketBytes: 1 << 20, port, wsPort, tls: { cert: certs.certFile, key: certs.keyFile }, user: userInfo().username });
    writeFileSync(join(dir, 'mosquitto.conf'), conf, { mode: 0o600 });
    const mq = await startMosquitto(join(dir, 'mosquitto.conf'), port, join(dir, 'mosquitto.log'));
    try {
      const creds = { username: 'household-h1', password: 'h1 password', ca: certs.ca, reconnectPeriod: 0, connectTimeout: 5000 };
      const tls = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, { ...creds, clientId: 'household-h1-a' });
      const ws = await mqtt.connectAsync(`wss://127.0.0.1:${wsPort}`, { ...creds, clientId: 'household-h1-b' });
      expect(tls.connected && ws.connected).toBe(true);
      await tls.endAsync();
      await ws.endAsync();
      await expect(mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, { ...creds, ca: undefined, clientId: 'household-h1-c' })).rejects.toThrow(/self[- ]signed|unable to (get|verify)/i);
    } finally {
      await mq.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
