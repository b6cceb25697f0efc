/**
 * lib/log.ts: JSON lines for machines (a pipe), short readable lines for people (a terminal), or what
 * --log-format says; and the CLI end to end: a meter whose serial device is missing, logged both ways.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createLogger, prettyLine, setLogFormat, type LogSink } from '../../lib/log.js';
import { meterId, systemTitle } from '../../protocol/frame.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const dir = mkdtempSync(join(tmpdir(), 'sm-log-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => setLogFormat('auto'));

function sink(isTTY: boolean): LogSink & { lines: string[] } {
  const lines: string[] = [];
  return { isTTY, lines, write: (l: string) => void lines.push(...l.split('\n').filter(Boolean)) };
}

describe('createLogger', () => {
  it('auto: JSON to a pipe, pretty lines to a terminal', () => {
    const pipe = sink(false);
    createLogger('meter', { sink: pipe }).warn({ port: '/dev/ttyUSB0', retryMs: 250 }, 'cannot open serial port');
    expect(JSON.parse(pipe.lines[0]!)).toMatchObject({ level: 40, name: 'meter', msg: 'cannot open serial port', port: '/dev/ttyUSB0', retryMs: 250 });
    const tty = sink(true);
    createLogger('meter', { sink: tty, colour: false }).warn({ port: '/dev/ttyUSB0', retryMs: 250 }, 'cannot open serial port');
    expect(tty.lines[0]).toMatch(/^\d\d:\d\d:\d\d WARN  meter: cannot open serial port  port=\/dev\/ttyUSB0 retryMs=250$/);
  });

  it('an explicit format wins over the terminal, and setLogFormat sets it for loggers made afterwards', () => {
    const tty = sink(true);
    createLogger('x', { sink: tty, format: 'json' }).info('hello');
    expect(JSON.parse(tty.lines[0]!)).toMatchObject({ msg: 'hello', name: 'x' });
    const pipe = sink(false);
    setLogFormat('pretty');
    createLogger('x', { sink: pipe, colour: false }).error({ err: new Error('boom') }, 'failed');
    expect(pipe.lines[0]).toMatch(/ ERROR x: failed  err="boom"$/);
  });

  it('colours only when asked (a terminal without NO_COLOR), and the level filters', () => {
    const tty = sink(true);
    const log = createLogger('x', { sink: tty, colour: true, level: 'warn' });
    log.info('not shown');
    log.warn('shown');
    expect(tty.lines).toHaveLength(1);
    expect(tty.lines[0]).toContain('\u001b[33mWARN \u001b[0m');
  });

  it('prettyLine: quotes values with spaces, passes non-JSON through', () => {
    expect(prettyLine(JSON.stringify({ level: 30, time: 0, msg: 'up', url: 'http://x', note: 'two words', n: { a: 1 } }), false)).toMatch(/ INFO  up  url=http:\/\/x note="two words" n=\{"a":1\}$/);
    expect(prettyLine('plain text\n', false)).toBe('plain text');
  });
});

describe('the CLI logs for people or for machines', () => {
  const id = meterId(systemTitle('SMR', 4545));
  const keys = join(dir, 'keys');
  mkdirSync(join(keys, 'meters'), { recursive: true });
  writeFileSync(join(keys, 'meters', `${id}.key`), Buffer.alloc(32, 0x45).toString('hex'), { mode: 0o600 });
  writeFileSync(join(keys, 'fleet.json'), JSON.stringify({ version: 1, meters: [{ meter: id, label: 'm', household: 'hh-m', neighbourhood: 'nb-m', gateway: 'gw-nb-m', source: 'synthetic:1' }], gateways: ['gw-nb-m'], households: ['hh-m'], neighbourhoods: ['nb-m'] }));
  const missing = `/dev/ttyUSB-absent-${process.pid}`;

  function meter(...extra: string[]): Promise<{ code: number | null; out: string; err: string }> {
    const args = [...extra, 'meter', '--keys', keys, '--meter', id, '--port', missing, '--port-wait', '1s', '--nv', join(dir, 'nv.cbor')];
    const p = spawn(process.execPath, [join(ROOT, 'bin/smartermeter.js'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += String(d)));
    p.stderr.on('data', (d) => (err += String(d)));
    return new Promise((res) => p.on('exit', (code) => res({ code, out, err })));
  }

  it('piped: JSON lines; --log-format pretty: readable lines; either way a clear error and exit 1', async () => {
    const [json, pretty] = await Promise.all([meter(), meter('--log-format', 'pretty')]);
    for (const r of [json, pretty]) {
      expect(r.code).toBe(1);
      expect(r.err).toContain(`smartermeter: cannot open serial port ${missing}: `);
    }
    const records = json.out.trim().split('\n').map((l) => JSON.parse(l) as { msg: string; name: string });
    expect(records.filter((r) => r.msg === 'cannot open serial port').length).toBeGreaterThanOrEqual(2);
    expect(records.every((r) => r.name === 'meter')).toBe(true);
    const lines = pretty.out.trim().split('\n');
    expect(lines.some((l) => /^\d\d:\d\d:\d\d WARN  meter: cannot open serial port  port=\/dev\/ttyUSB-absent-\d+ /.test(l))).toBe(true);
    expect(lines.some((l) => l.startsWith('{'))).toBe(false);
    // Bounded: a few retries over the second, not a growing stream.
    expect(lines.length).toBeLessThan(12);
  });
});
