/**
 * Secrets never in logs. Two kinds of runs produce the logs scanned here:
 * - the whole system in this process (cli/system.ts startSystem: broker, MDMS, PES, gateways, meters on the
 *   sample fleet's UMass data), every component logging at debug level into one buffer;
 * - the CLI as separate processes, stdout and stderr: `provision`, a full `replay` with SM_LOG=debug, then
 *   `broker`, `pes`, `mdms ingest`, `gateway` (with its password on the command line, in the URL and in
 *   --password) and `ucs serve` started against the key set and stopped after they connected.
 * The scan looks for every secret of the key set — meter AES keys (hex, base64, base64url), the PES, MDMS and
 * household RSA private keys (PEM lines, DER bytes), the Paillier primes (decimal and hex), every broker
 * password, every activation code — and for plaintext readings: the register values the meters sent (found
 * by deciphering their frames at the broker) in any reading-like field of a log line.
 */
import { spawn } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSystem } from '../../cli/system.js';
import { MockBinding } from '../../firmware/hal/crossed-mock.js';
import { decodeFrame, meterId, openFrame } from '../../protocol/frame.js';
import { decodePrivateKey } from '../../protocol/paillier/engine.js';
import { decodeReadingBatch } from '../../protocol/reading.js';
import { decodeUplink } from '../../protocol/uplink.js';
import { loadCredentials, loadFleet, loadMeterKey, type Fleet } from '../../lib/keyset.js';

const root = resolve(import.meta.dirname, '../..');
const fleetCsv = join(root, 'data/sample/fleet.csv');
const dir = mkdtempSync(join(tmpdir(), 'sm-secrets-'));
const keysDir = join(dir, 'keys');
let fleet: Fleet;
/** Every log of every run, by run name. */
const logs = new Map<string, string>();
/** Register values (Wh) the meters sent, deciphered at the broker. */
const registerValues = new Set<number>();

/** A CLI process: its output so far, a wait for a pattern in it, and a stop (SIGTERM) that resolves with everything. */
function startCli(args: string[], env: Record<string, string> = {}) {
  const p = spawn(process.execPath, [join(root, 'bin/smartermeter.js'), ...args], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const exited = new Promise<number | null>((resolve) => p.once('exit', resolve));
  p.stdout.on('data', (d: Buffer) => (out += String(d)));
  p.stderr.on('data', (d: Buffer) => (out += String(d)));
  return {
    get out() {
      return out;
    },
    async waitFor(re: RegExp, ms = 60_000): Promise<RegExpMatchArray> {
      const end = Date.now() + ms;
      for (;;) {
        const m = re.exec(out);
        if (m) return m;
        if (p.exitCode !== null || Date.now() > end) throw new Error(`smartermeter ${args.join(' ')}: no ${re} in its output: ${out.slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop(): Promise<{ code: number | null; out: string }> {
      if (p.exitCode === null) p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(t);
      return { code, out };
    },
    exited,
  };
}

/** Runs the CLI to completion. */
async function cli(args: string[], env: Record<string, string> = {}, ms = 180_000): Promise<{ code: number | null; out: string }> {
  const p = startCli(args, env);
  const t = setTimeout(() => void p.stop(), ms);
  const code = await p.exited;
  clearTimeout(t);
  return { code, out: p.out };
}

/** Every secret string of the key set, with a name for the report. */
function secrets(): [string, string][] {
  const out: [string, string][] = [];
  const add = (name: string, s: string) => s.length >= 8 && out.push([name, s]);
  for (const m of fleet.meters) {
    const k = loadMeterKey(keysDir, m.meter);
    add(`meter ${m.meter} key (hex)`, k.toString('hex'));
    add(`meter ${m.meter} key (base64)`, k.toString('base64').replace(/=+$/, ''));
    add(`meter ${m.meter} key (base64url)`, k.toString('base64url'));
    add(`meter ${m.meter} key (byte list)`, [...k.subarray(0, 8)].join(','));
  }
  const pems = ['pes/pes.key.pem', 'mdms/mdms.key.pem', ...readdirSync(join(keysDir, 'households')).filter((f) => f.endsWith('.key.pem')).map((f) => `households/${f}`)];
  for (const f of pems) {
    const pem = readFileSync(join(keysDir, f), 'utf8');
    const lines = pem.split('\n').filter((l) => l && !l.startsWith('-----'));
    lines.slice(1, -1).forEach((l, i) => add(`${f} PEM line ${i + 2}`, l.slice(0, 48)));
    const der = createPrivateKey(pem).export({ type: 'pkcs8', format: 'der' });
    const jwk = createPrivateKey(pem).export({ format: 'jwk' });
    add(`${f} DER (hex)`, der.subarray(200, 232).toString('hex'));
    for (const part of ['d', 'p', 'q', 'dp', 'dq', 'qi'] as const) add(`${f} ${part} (base64url)`, String(jwk[part]).slice(0, 40));
  }
  const paillier = decodePrivateKey(readFileSync(join(keysDir, 'pes/paillier.key')));
  for (const [name, v] of Object.entries(paillier.primes)) {
    add(`Paillier ${name} (decimal)`, v.toString(10).slice(0, 60));
    add(`Paillier ${name} (hex)`, v.toString(16).slice(0, 60));
  }
  for (const f of readdirSync(join(keysDir, 'credentials'))) {
    const user = f.replace(/\.json$/, '');
    add(`broker password of ${user}`, loadCredentials(keysDir, user).password);
  }
  for (const f of readdirSync(join(keysDir, 'households')).filter((x) => x.endsWith('.activation'))) {
    const code = readFileSync(join(keysDir, 'households', f), 'utf8').trim();
    add(`activation code ${f}`, code);
    add(`activation code ${f} (no dashes)`, code.replace(/-/g, ''));
  }
  return out;
}

/** Log lines that carry a reading: a reading-like field whose value is a register value a meter sent. */
function readingLeaks(text: string): string[] {
  const hits: string[] = [];
  const field = /^(importWh|prevWh|registerWh|register|lastWh|wh|energyWh|powerW|value|values|reading)$/i;
  const walk = (v: unknown, path: string, line: string) => {
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${path}[${i}]`, line));
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) {
      if (k === 'readings' && Array.isArray(x)) hits.push(`readings array at ${path}.${k}: ${line.slice(0, 200)}`);
      if (field.test(k) && typeof x === 'number' && registerValues.has(x)) hits.push(`${path}.${k}=${x}: ${line.slice(0, 200)}`);
      walk(x, `${path}.${k}`, line);
    }
  };
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      for (const m of line.matchAll(/(importWh|prevWh|registerWh)\W{1,3}(\d+)/gi)) if (registerValues.has(Number(m[2]))) hits.push(`${m[0]}: ${line.slice(0, 200)}`);
      continue;
    }
    walk(parsed, '', line);
  }
  return hits;
}

beforeAll(async () => {
  // 1. provision, as a process
  const prov = await cli(['provision', '--fleet', fleetCsv, '--out', keysDir, '--rsa-bits', '2048', '--paillier-bits', '1024', '--household-keys']);
  expect(prov.code, prov.out).toBe(0);
  logs.set('provision', prov.out);
  fleet = loadFleet(keysDir);

  // 2. the whole system in this process, debug logs into a buffer
  let text = '';
  const sink = new Writable({
    write(chunk, _e, cb) {
      text += String(chunk);
      cb();
    },
  });
  const sys = await startSystem({
    keysDir,
    fleet,
    db: join(dir, 'mdms.sqlite'),
    stateDir: join(dir, 'state'),
    intervalS: 900,
    billing: '1d',
    k: 1,
    latenessS: 900,
    tz: 'UTC',
    speed: 'max',
    synthetic: { start: 1_704_067_200, days: 1 },
    log: pino({ level: 'debug' }, sink),
  });
  const keys = new Map(fleet.meters.map((m) => [m.meter, loadMeterKey(keysDir, m.meter)]));
  await new Promise<void>((r) =>
    sys.broker!.aedes.subscribe(
      'sm/v1/frames/+',
      (packet, cb) => {
        for (const bytes of decodeUplink(packet.payload as Buffer).frames) {
          const f = decodeFrame(bytes);
          const b = decodeReadingBatch(openFrame(keys.get(meterId(f.systemTitle))!, f));
          registerValues.add(b.prevWh);
          for (const x of b.readings) registerValues.add(x.importWh);
        }
        cb();
      },
      r,
    ),
  );
  try {
    await sys.metersDone();
    await sys.drain({ stallMs: 60_000 });
  } finally {
    await sys.close();
    MockBinding.reset();
  }
  logs.set('system (in process, debug)', text);

  // 3. the CLI as processes: a full replay at debug level, then each service against the key set
  const replay = await cli(['replay', '--fleet', fleetCsv, '--keys', keysDir, '--db', join(dir, 'replay.sqlite'), '--state', join(dir, 'replay-state'), '--k', '1', '--no-progress'], { SM_LOG: 'debug' });
  expect(replay.code, replay.out.slice(-3000)).toBe(0);
  logs.set('replay (process, SM_LOG=debug)', replay.out);

  const broker = startCli(['broker', '--keys', keysDir, '--port', '0', '--ws-port', '0']);
  const brokerUrl = (await broker.waitFor(/broker listening on (mqtt:\/\/[0-9.:]+)/))[1]!;
  const gwPass = loadCredentials(keysDir, 'gateway-gw-nb-1').password;
  const host = new URL(brokerUrl).host;
  const services: [string, string[], RegExp][] = [
    ['pes', ['pes', '--keys', keysDir, '--mqtt', brokerUrl, '--state', join(dir, 'pes-cli.sqlite'), '--k', '1'], /subscribed/],
    ['mdms ingest', ['mdms', 'ingest', '--keys', keysDir, '--mqtt', brokerUrl, '--db', join(dir, 'mdms-cli.sqlite')], /subscribed/],
    ['gateway (password in the URL)', ['gateway', '--id', 'gw-nb-1', '--line', join(dir, 'no-such-tty'), '--mqtt', `mqtt://gateway-gw-nb-1:${encodeURIComponent(gwPass)}@${host}`], /serial line down/],
    ['gateway (--password)', ['gateway', '--id', 'gw-nb-1', '--line', join(dir, 'no-such-tty'), '--mqtt', brokerUrl, '--username', 'gateway-gw-nb-1', '--password', gwPass], /serial line down/],
    ['ucs serve', ['ucs', 'serve', '--keys', keysDir, '--http', '0', '--mqtt', brokerUrl, '--db', join(dir, 'ucs.sqlite')], /listening|subscribed/i],
  ];
  for (const [name, args, ready] of services) {
    const p = startCli(args);
    await p.waitFor(ready);
    await new Promise((r) => setTimeout(r, 1500)); // its first moments of work
    logs.set(`${name} (process)`, (await p.stop()).out);
  }
  logs.set('broker (process)', (await broker.stop()).out);
}, 400_000);

afterAll(() => {
  // SM_SECURITY_LOG_DIR=<dir> keeps the scanned logs for a human look.
  const keep = process.env.SM_SECURITY_LOG_DIR;
  if (keep) for (const [name, text] of logs) writeFileSync(join(keep, `${name.replace(/[^a-z0-9]+/gi, '-')}.log`), text);
  rmSync(dir, { recursive: true, force: true });
});

describe('logs of a full run', () => {
  it('were produced by every run (the scan is not vacuous)', () => {
    expect([...logs.keys()]).toHaveLength(9);
    expect(logs.get('system (in process, debug)')!.split('\n').length).toBeGreaterThan(50);
    expect(logs.get('system (in process, debug)')).toMatch(/"level":20/); // debug lines are in
    expect(logs.get('replay (process, SM_LOG=debug)')).toMatch(/"level":20/);
    expect(registerValues.size).toBeGreaterThan(1000);
    for (const [name, text] of logs) expect(text.length, name).toBeGreaterThan(0);
  });

  it('the scan finds a planted secret of each kind and a planted reading (it can fail)', () => {
    const all = secrets();
    const kinds = ['key (hex)', 'key (base64)', 'PEM line', 'DER (hex)', 'Paillier p (decimal)', 'Paillier q (hex)', 'broker password', 'activation code'];
    for (const kind of kinds) {
      const [name, s] = all.find(([n]) => n.includes(kind))!;
      const planted = JSON.stringify({ level: 30, msg: 'oops', detail: `x${s.toUpperCase()}y` }).toLowerCase();
      expect(planted.includes(s.toLowerCase()), name).toBe(true);
    }
    const value = [...registerValues][Math.floor(registerValues.size / 2)]!;
    expect(readingLeaks(JSON.stringify({ level: 20, meter: 'x', batch: { prevWh: value } }))).toHaveLength(1);
    expect(readingLeaks(JSON.stringify({ level: 20, body: { readings: [[1, 2, 3, 4, 0]] } }))).toHaveLength(1);
    expect(readingLeaks(`importWh=${value}`)).toHaveLength(1);
    expect(readingLeaks(JSON.stringify({ level: 30, counters: { readings: value, framesOk: value } }))).toHaveLength(0); // counts are not readings
  });

  it('carry no key, private key material, password or activation code', () => {
    const all = secrets();
    expect(all.length).toBeGreaterThan(40);
    const hits: string[] = [];
    for (const [run, text] of logs) {
      const lower = text.toLowerCase();
      for (const [name, s] of all) if (lower.includes(s.toLowerCase())) hits.push(`${name} in ${run}`);
      if (/PRIVATE KEY/.test(text)) hits.push(`a PEM private key in ${run}`);
    }
    expect(hits).toEqual([]);
  });

  it('carry no plaintext reading', () => {
    const hits = [...logs].flatMap(([run, text]) => readingLeaks(text).map((h) => `${run}: ${h}`));
    expect(hits).toEqual([]);
  });
});
