/**
 * Bounded fuzz of the PES's MQTT payload handlers (the real service, pes/mqtt.ts handleMessage): uplinks of
 * genuine, replayed, mutated, re-labelled, re-keyed, truncated and random frames, and household key messages
 * with mutated SPKI, weak or non-RSA keys and wrong households. `npm run fuzz` runs the same at scale.
 */
import { describe, expect, it } from 'vitest';
import { fuzzCheck } from './fuzz-check.js';
import { householdKeyTarget, pesTarget } from '../../bench/harness/fuzz-targets.js';

describe('fuzz: PES MQTT handler', () => {
  it('uplinks: no crash, every frame counted once, nothing forged or replayed folded, every published reading genuine', async () => {
    const r = await fuzzCheck(pesTarget({ rsaBits: 1024, paillierBits: 512, framesPerMeter: 120 }), 1500);
    expect(r.figures.framesOk).toBeGreaterThan(0);
    expect(r.figures.badTag).toBeGreaterThan(0);
    expect((r.figures.replay ?? 0) + (r.figures.duplicateFrame ?? 0)).toBeGreaterThan(0); // resent frames: replays, or exact duplicates (issue 15 item 3)
    expect(r.figures.malformedUplink).toBeGreaterThan(0);
  });

  it('household keys: accepted exactly when §10.1 says so, and counted', async () => {
    const r = await fuzzCheck(householdKeyTarget({ rsaBits: 1024, paillierBits: 512 }), 800);
    expect(r.figures.badHouseholdKey).toBeGreaterThan(0);
  });
});
