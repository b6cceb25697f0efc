// lib/blind-service.ts runBlindCommand: a SIGUSR2 flush whose commit fails stops the command (its releases left
// the windows but never reached the state file: memory is ahead of the file), as a failing uplink commit does;
// a flush that works keeps it running until SIGTERM, which closes it cleanly.
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { runBlindCommand } from '../../lib/blind-service.js';

function fakeService(flush: () => void) {
  const calls: string[] = [];
  return {
    calls,
    svc: {
      ready: Promise.resolve(),
      failed: new Promise<Error>(() => undefined),
      flush: () => (calls.push('flush'), flush()),
      close: async () => void calls.push('close'),
      kill: async () => void calls.push('kill'),
    },
  };
}

const opts = { tag: 'test', log: pino({ level: 'silent' }), subscribed: {}, stopped: () => ({}) };

describe('runBlindCommand', () => {
  it('stops with the error when a SIGUSR2 flush fails to commit, after killing the service', async () => {
    const f = fakeService(() => {
      throw new Error('disk full');
    });
    const run = runBlindCommand(f.svc, opts);
    await new Promise((r) => setTimeout(r, 10));
    process.emit('SIGUSR2');
    await expect(run).rejects.toThrow('disk full');
    expect(f.calls).toEqual(['flush', 'kill']);
  });

  it('keeps running after a flush that works, and closes on SIGTERM', async () => {
    const f = fakeService(() => undefined);
    const run = runBlindCommand(f.svc, opts);
    await new Promise((r) => setTimeout(r, 10));
    process.emit('SIGUSR2');
    process.emit('SIGTERM');
    await run;
    expect(f.calls).toEqual(['flush', 'close']);
  });
});
