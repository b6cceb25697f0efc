/**
 * Every vector of docs/protocol.md, recomputed: the document is the contract, this file keeps it true.
 * AES-GCM results are checked with a second, independent implementation (@noble/ciphers) as well.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { constants, createPrivateKey, createPublicKey, generateKeyPairSync, hkdfSync, scryptSync, sign, verify, webcrypto } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cborDecode, cborEncode } from '../../protocol/cbor.js';
import { crc16x25 } from '../../protocol/crc.js';
import { decodeMessage, encodeAck, encodeFrame, encodeKeyAck, encodeKeyTransfer, frameAad, frameIv, MSG_ACK, MSG_FRAME, MSG_KEY_ACK, MSG_KEY_TRANSFER, openFrame, SC_AES256GCM, sealFrame, systemTitle } from '../../protocol/frame.js';
import { unwrapMeterKey, wrapMeterKey } from '../../protocol/key-wrap.js';
import { createCipheriv } from 'node:crypto';
import { encodeLinkFrame } from '../../protocol/link.js';
import { decodeReadingBatch, encodeReadingBatch, readingEnergies, readingExports } from '../../protocol/reading.js';
import { parseAggregate } from '../../protocol/aggregate.js';
import { aggregateAad, aggregateSigned, meterStreamAad, parseAggregateEnvelope, parseMeterStream, parseStream, streamAad, streamEpochSigned } from '../../protocol/envelope.js';
import { openMeterStream, sealMeterStream } from '../../protocol/meter-seal.js';
import { activationMac, activationSecretsSync, bindingKeySync, meterStreamKeySync, bindingSigned, decodeHouseholdKey, encodeHouseholdKey, popSigned, PSS_SALT_BYTES } from '../../protocol/household-key.js';
import { parseStreamBody, streamBody } from '../../protocol/stream.js';
import { keyId, openAggregate, openStream, SignatureError, unwrapKey } from '../../protocol/seal.js';
import { topics } from '../../protocol/topics.js';
import { decodeUplink, encodeUplink } from '../../protocol/uplink.js';
import { decodeE2ePayload, encodeE2ePayload, packNoisy, registerLayout, unpackNoisy, unpackRegisters } from '../../protocol/e2e.js';
import { PrivateKey } from '../../protocol/paillier/engine.js';
import { ciphertextFromBytes, ciphertextToBytes } from '../../protocol/paillier/codec.js';
import { docBlock, docBlocks, docHex, parseDiag } from './doc.js';
import { runParser } from './link-model.js';
import { nobleGcmOpen } from './noble.js';

const blocks = docBlocks();
const hex = (name: string) => docHex(name, blocks);
const checked = new Set<string>();
const vec = (name: string) => {
  checked.add(name);
  return hex(name);
};

const parse = (wire: Uint8Array) => runParser([wire]);

describe('docs/protocol.md vectors', () => {
  it('CRC-16/X.25 check value', () => {
    expect(crc16x25(vec('crc.check.input'))).toBe(vec('crc.check.value').readUInt16BE(0));
    expect(vec('crc.check.value').toString('hex')).toBe('906e');
  });

  it.each(['snrm', 'stuffing', 'fcs-stuffed'])('link frame %s: encoder output and parser result', async (n) => {
    const payload = vec(`link.${n}.payload`);
    const wire = vec(`link.${n}.wire`);
    expect(encodeLinkFrame(payload)).toEqual(wire);
    const { payloads, counters } = await parse(wire);
    expect(payloads).toEqual([payload]);
    expect(counters).toEqual({ frames: 1, badCrc: 0, oversize: 0, malformed: 0, resyncs: 0, garbageBytes: 0 });
  });

  it('every cbor-diag block encodes to the hex block of the same name, and back', () => {
    const diags = blocks.filter((b) => b.kind === 'cbor-diag');
    expect(diags.length).toBeGreaterThanOrEqual(10);
    for (const d of diags) {
      const value = parseDiag(d.text);
      expect(cborEncode(value).toString('hex'), d.name).toBe(vec(d.name).toString('hex'));
      expect(cborDecode(hex(d.name)), d.name).toEqual(value);
    }
  });

  it('reading batches: energies are register differences, reset restarts from 0', () => {
    const batch = decodeReadingBatch(vec('reading.batch'));
    expect(readingEnergies(batch)).toEqual([123, 122]);
    expect(batch.readings[1]!.status).toBe(1);
    expect(readingEnergies(decodeReadingBatch(vec('reading.reset')))).toEqual([40]);
    const prosumer = decodeReadingBatch(vec('reading.export'));
    expect(readingEnergies(prosumer)).toEqual([3, 11]);
    expect(readingExports(prosumer)).toEqual([192, 117]);
    expect(encodeReadingBatch(prosumer)).toEqual(hex('reading.export'));
  });

  it('ciphered frame: IV, AAD, ciphertext, CBOR message and wire bytes', async () => {
    const key = vec('frame.key');
    const st = vec('frame.system-title');
    expect(st).toEqual(Buffer.from(systemTitle('SMR', 1001)));
    const ic = vec('frame.ic').readUInt32BE(0);
    const h = { systemTitle: new Uint8Array(st), sc: SC_AES256GCM, ic };
    const plaintext = vec('frame.plaintext');
    expect(plaintext).toEqual(hex('reading.batch'));
    expect(Buffer.from(frameIv(st, ic))).toEqual(vec('frame.iv'));
    expect(Buffer.from(frameAad(h))).toEqual(vec('frame.aad'));
    const frame = sealFrame(key, h, plaintext);
    expect(Buffer.from(frame.ciphertext)).toEqual(vec('frame.ciphertext'));
    // Second implementation: the doc's IV and AAD layout, not our code's, decides.
    expect(nobleGcmOpen(key, hex('frame.iv'), hex('frame.ciphertext'), hex('frame.aad'), 12)).toEqual(plaintext);
    expect(encodeFrame(frame)).toEqual(vec('frame.cbor'));
    expect(encodeLinkFrame(hex('frame.cbor'))).toEqual(vec('frame.wire'));
    expect(hex('frame.wire').length).toBe(hex('frame.cbor').length + 4); // as the doc says: nothing to stuff
    expect(hex('frame.wire').subarray(-3, -1).readUInt16LE(0)).toBe(0xd4d5);
    // And what a receiver does with the wire bytes.
    const { payloads } = await parse(hex('frame.wire'));
    const m = decodeMessage(payloads[0]!);
    if (m.type !== MSG_FRAME) throw new Error('not a frame');
    expect(Buffer.from(openFrame(key, m))).toEqual(plaintext);
  });

  it('acknowledgement', async () => {
    const ack = encodeAck({ systemTitle: hex('frame.system-title'), ic: 42 });
    expect(ack).toEqual(vec('ack.cbor'));
    expect(encodeLinkFrame(ack)).toEqual(vec('ack.wire'));
    const m = decodeMessage((await parse(hex('ack.wire'))).payloads[0]!);
    expect(m.type === MSG_ACK && m.ic).toBe(42);
  });

  it('key transfer: RFC 3394 vector, generation-bound wrap, messages and wire bytes', async () => {
    const kek = vec('keywrap.rfc3394.kek');
    const key = vec('keywrap.rfc3394.key');
    // The primitive is RFC 3394 itself: node:crypto with the default initial value gives the RFC's §4.6 vector.
    const rfc = createCipheriv('id-aes256-wrap', kek, Buffer.from('a6a6a6a6a6a6a6a6', 'hex'));
    expect(Buffer.concat([rfc.update(key), rfc.final()])).toEqual(vec('keywrap.rfc3394.wrapped'));
    const wrapped = vec('keywrap.generation1.wrapped');
    expect(wrapMeterKey(kek, 1, key)).toEqual(wrapped);
    expect(unwrapMeterKey(kek, 1, wrapped)).toEqual(key);
    expect(() => unwrapMeterKey(kek, 2, wrapped)).toThrow('does not authenticate'); // the generation is bound
    const st = hex('frame.system-title');
    const transfer = encodeKeyTransfer({ systemTitle: st, generation: 1, wrapped });
    expect(transfer).toEqual(vec('keytransfer.cbor'));
    expect(encodeLinkFrame(transfer)).toEqual(vec('keytransfer.wire'));
    const m = decodeMessage((await parse(hex('keytransfer.wire'))).payloads[0]!);
    expect(m.type === MSG_KEY_TRANSFER && [m.generation, Buffer.from(m.wrapped)]).toEqual([1, wrapped]);
    expect(encodeKeyAck({ systemTitle: st, generation: 1 })).toEqual(vec('keyack.cbor'));
    const a = decodeMessage(hex('keyack.cbor'));
    expect(a.type === MSG_KEY_ACK && a.generation).toBe(1);
  });

  it('uplink carries the frame bytes unchanged', () => {
    expect(encodeUplink({ gateway: 'gw-nb1', frames: [hex('frame.cbor')] })).toEqual(vec('uplink.cbor'));
    expect(decodeUplink(hex('uplink.cbor')).frames.map((f) => Buffer.from(f))).toEqual([hex('frame.cbor')]);
  });

  describe('seals', () => {
    const priv = createPrivateKey(docBlock('pem', 'seal.test-private-key', blocks));
    const aggTopic = topics.neighbourhood('nb1');
    const streamTopic = topics.household('hh1');
    // The documented test signing key: RFC 8032 §7.1 TEST 1's seed, as PKCS#8 (RFC 8410 §7: fixed prefix + seed).
    const signer = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), hex('seal.test-signing-key')]), format: 'der', type: 'pkcs8' });
    const pesPublic = createPublicKey(docBlock('pem', 'seal.test-verify-key', blocks));
    const subtle = webcrypto.subtle;
    const webVerify = async (sig: Uint8Array, data: Uint8Array) =>
      subtle.verify('Ed25519', await subtle.importKey('raw', hex('seal.test-verify-key'), 'Ed25519', false, ['verify']), sig, data);

    it('test signing key: the RFC 8032 §7.1 TEST 1 pair, as node:crypto derives it, and the documented PEM', () => {
      expect(vec('seal.test-signing-key').toString('hex')).toBe('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60');
      const derived = createPublicKey(signer).export({ type: 'spki', format: 'der' });
      expect(derived.subarray(-32)).toEqual(vec('seal.test-verify-key'));
      expect(vec('seal.test-verify-key').toString('hex')).toBe('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
      expect(pesPublic.export({ type: 'spki', format: 'der' })).toEqual(derived);
      // and RFC 8032 TEST 1's own signature of the empty message, so the key really is that one
      expect(sign(null, Buffer.alloc(0), signer).toString('hex')).toBe(
        'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
      );
    });

    it('aggregate: the signed bytes and the signature (deterministic), verified by node:crypto and WebCrypto', async () => {
      const payload = vec('seal.aggregate.payload');
      const env = parseAggregateEnvelope(payload);
      const signed = Buffer.from(aggregateSigned(aggTopic, env));
      expect(signed).toEqual(vec('seal.aggregate.signed'));
      expect(cborDecode(signed)).toEqual([1, aggTopic, ...(cborDecode(payload) as unknown[]).slice(1, 5)]);
      expect(Buffer.from(env.sig)).toEqual(vec('seal.aggregate.sig'));
      expect(sign(null, signed, signer)).toEqual(vec('seal.aggregate.sig'));
      expect(verify(null, signed, pesPublic, env.sig)).toBe(true);
      expect(await webVerify(env.sig, signed)).toBe(true);
      // the payload is the unsigned envelope of the previous version with the signature appended
      expect(Buffer.from(cborEncode([...(cborDecode(payload) as unknown[]).slice(0, 5), vec('seal.aggregate.sig')])).toString('hex')).toBe(payload.toString('hex'));
      // another topic: the signature does not verify
      expect(verify(null, aggregateSigned(topics.neighbourhood('nb2'), env), pesPublic, env.sig)).toBe(false);
      expect(await webVerify(env.sig, aggregateSigned(topics.neighbourhood('nb2'), env))).toBe(false);
    });

    it('stream: the epoch signed bytes and the signature (deterministic), verified by node:crypto and WebCrypto', async () => {
      const env = parseStream(vec('seal.stream.payload'));
      const signed = Buffer.from(streamEpochSigned(streamTopic, env.kid, env.epoch, env.wrapped));
      expect(signed).toEqual(vec('seal.stream.signed'));
      expect(cborDecode(signed)).toEqual([2, streamTopic, Buffer.from(env.kid), 19675, Buffer.from(env.wrapped)]);
      expect(Buffer.from(env.epochSig)).toEqual(vec('seal.stream.sig'));
      expect(sign(null, signed, signer)).toEqual(vec('seal.stream.sig'));
      expect(verify(null, signed, pesPublic, env.epochSig)).toBe(true);
      expect(await webVerify(env.epochSig, signed)).toBe(true);
      expect(await webVerify(env.epochSig, streamEpochSigned(topics.household('hh2'), env.kid, env.epoch, env.wrapped))).toBe(false);
    });

    it('household key message carries the SPKI the kid is computed from', () => {
      const spki = createPublicKey(priv).export({ type: 'spki', format: 'der' });
      const bk = bindingKeySync('ABCD-EFGH-JKLM', 'hh1');
      expect(Buffer.from(bk)).toEqual(vec('household-key.binding-key'));
      expect(Buffer.from(bindingSigned('hh1', spki, 1_765_000_000))).toEqual(vec('household-key.signed'));
      expect(Buffer.from(activationMac(bk, 'hh1', spki, 1_765_000_000))).toEqual(vec('household-key.mac'));
      const m = decodeHouseholdKey(topics.householdKey('hh1'), vec('household-key.cbor'));
      if (m.spki === null || m.auth.type !== 'activation') throw new Error('the documented message binds by activation');
      expect(Buffer.from(m.spki)).toEqual(spki);
      expect(m.boundAt).toBe(1_765_000_000);
      expect(Buffer.from(m.auth.mac)).toEqual(hex('household-key.mac'));
      // pop: RSA-PSS by the documented key over [2, hh, spki, boundAt, auth]; re-encoding gives the same bytes
      const pss = { key: createPublicKey(priv), padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: PSS_SALT_BYTES };
      expect(verify('sha256', popSigned('hh1', spki, m.boundAt, m.auth), pss, m.pop)).toBe(true);
      expect(Buffer.from(encodeHouseholdKey({ ...m, spki: m.spki }))).toEqual(hex('household-key.cbor'));
      expect(() => decodeHouseholdKey(topics.householdKey('hh2'), vec('household-key.cbor'))).toThrow(/differs from topic/);
    });

    it('kid and AADs', () => {
      expect(keyId(priv)).toEqual(vec('seal.kid'));
      expect(Buffer.from(aggregateAad(aggTopic, keyId(priv)))).toEqual(vec('seal.aggregate.aad'));
      expect(Buffer.from(streamAad(streamTopic, keyId(priv), 19675))).toEqual(vec('seal.stream.aad'));
      expect(Buffer.from(parseAggregateEnvelope(vec('seal.aggregate.payload')).kid)).toEqual(vec('seal.kid'));
    });

    it('aggregate: the reference opener and an independent GCM both find the documented body', () => {
      const payload = vec('seal.aggregate.payload');
      expect(cborEncode(openAggregate(priv, aggTopic, payload, pesPublic))).toEqual(vec('seal.aggregate.body'));
      // unsigned (the previous version's five elements) or under another PES key: refused
      expect(() => openAggregate(priv, aggTopic, cborEncode((cborDecode(payload) as unknown[]).slice(0, 5)), pesPublic)).toThrow(SignatureError);
      expect(() => openAggregate(priv, aggTopic, payload, generateKeyPairSync('ed25519').publicKey)).toThrow(SignatureError);
      // the body is exactly what protocol/aggregate.ts accepts on that topic, and nothing it accepts elsewhere
      expect(cborEncode(parseAggregate(aggTopic, cborDecode(vec('seal.aggregate.body'))))).toEqual(vec('seal.aggregate.body'));
      expect(() => parseAggregate(topics.neighbourhood('nb2'), cborDecode(vec('seal.aggregate.body')))).toThrow(/key must equal/);
      const env = cborDecode(payload) as [number, Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array];
      const cek = unwrapKey(priv, env[2]);
      expect(cek).toEqual(vec('seal.aggregate.content-key'));
      expect(nobleGcmOpen(cek, env[3], env[4], hex('seal.aggregate.aad'), 16)).toEqual(hex('seal.aggregate.body'));
    });

    it('stream: the reference opener and an independent GCM both find the documented body', () => {
      const payload = vec('seal.stream.payload');
      expect(cborEncode(openStream(priv, pesPublic, streamTopic, payload))).toEqual(vec('seal.stream.body'));
      // protocol/stream.ts parses the documented body and builds the same bytes from it
      const body = parseStreamBody(cborDecode(vec('seal.stream.body')));
      expect(cborEncode(streamBody(body.meter, body))).toEqual(vec('seal.stream.body'));
      const env = parseStream(payload);
      expect(env.epoch).toBe(19675);
      const cek = unwrapKey(priv, env.wrapped);
      expect(cek).toEqual(vec('seal.stream.content-key'));
      expect(nobleGcmOpen(cek, env.iv, env.ciphertext, hex('seal.stream.aad'), 16)).toEqual(hex('seal.stream.body'));
    });

    const dir = mkdtempSync(join(tmpdir(), 'sm-seal-doc-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'key.pem'), docBlock('pem', 'seal.test-private-key', blocks), { mode: 0o600 });
    writeFileSync(join(dir, 'pes-sign.pub.pem'), docBlock('pem', 'seal.test-verify-key', blocks));

    it('the documented Node script opens both seals', () => {
      writeFileSync(join(dir, 'open-seal.mjs'), docBlock('js', 'open-seal.mjs', blocks));
      const run = (topic: string, payload: Buffer) => {
        writeFileSync(join(dir, 'payload.bin'), payload);
        return execFileSync(process.execPath, ['open-seal.mjs', 'key.pem', 'pes-sign.pub.pem', topic, 'payload.bin'], { cwd: dir, encoding: 'utf8' }).trim();
      };
      expect(run(aggTopic, hex('seal.aggregate.payload'))).toBe(hex('seal.aggregate.body').toString('hex'));
      expect(run(streamTopic, hex('seal.stream.payload'))).toBe(hex('seal.stream.body').toString('hex'));
      const refused = (topic: string, payload: Buffer) => {
        writeFileSync(join(dir, 'payload.bin'), payload);
        const r = spawnSync(process.execPath, ['open-seal.mjs', 'key.pem', 'pes-sign.pub.pem', topic, 'payload.bin'], { cwd: dir, encoding: 'utf8' });
        expect(r.status).not.toBe(0);
        return r.stderr;
      };
      // refuses a seal presented under another topic, an unsigned one, and one whose signature was altered
      expect(refused(topics.neighbourhood('nb2'), hex('seal.aggregate.payload'))).toMatch(/not signed by the PES/);
      expect(refused(topics.household('hh2'), hex('seal.stream.payload'))).toMatch(/not signed by the PES/);
      expect(refused(aggTopic, cborEncode((cborDecode(hex('seal.aggregate.payload')) as unknown[]).slice(0, 5)))).toMatch(/not a signed seal/);
      const bad = Buffer.from(hex('seal.stream.payload'));
      const sigAt = bad.indexOf(hex('seal.stream.sig'));
      bad[sigAt + 10]! ^= 1;
      expect(refused(streamTopic, bad)).toMatch(/not signed by the PES/);
    });

    const openssl = spawnSync('openssl', ['version']).status === 0;
    it.skipIf(!openssl)('the documented OpenSSL commands unwrap the content key', () => {
      writeFileSync(join(dir, 'payload.bin'), hex('seal.aggregate.payload'));
      execFileSync('sh', ['-e', '-c', docBlock('sh', 'seal.openssl-unwrap', blocks)], { cwd: dir });
      expect(readFileSync(join(dir, 'cek.bin'))).toEqual(hex('seal.aggregate.content-key'));
    });

    it.skipIf(!openssl)('the documented OpenSSL commands verify the PES signature, and refuse an altered one', () => {
      writeFileSync(join(dir, 'payload.bin'), hex('seal.aggregate.payload'));
      const out = execFileSync('sh', ['-e', '-c', docBlock('sh', 'seal.openssl-verify', blocks)], { cwd: dir, encoding: 'utf8' });
      expect(out).toMatch(/Signature Verified Successfully/);
      expect(readFileSync(join(dir, 'signed.bin'))).toEqual(hex('seal.aggregate.signed'));
      expect(readFileSync(join(dir, 'sig.bin'))).toEqual(hex('seal.aggregate.sig'));
      const bad = Buffer.from(hex('seal.aggregate.payload'));
      bad[100]! ^= 1; // in the wrapped key
      writeFileSync(join(dir, 'payload.bin'), bad);
      const r = spawnSync('sh', ['-e', '-c', docBlock('sh', 'seal.openssl-verify', blocks)], { cwd: dir, encoding: 'utf8' });
      expect(r.status).not.toBe(0);
      expect(r.stdout + r.stderr).toMatch(/Signature Verification Failure/);
    });
  });

  it('§5.1 e2e payload: the snapshots re-encrypt to the vector and decrypt to the registers', () => {
    const key = new PrivateKey(BigInt('0x' + vec('e2e.test.p').toString('hex')), BigInt('0x' + vec('e2e.test.q').toString('hex')));
    const layout = registerLayout(key, 1);
    const r = 0x0123456789abcdefn;
    const snapshots = [
      { at: 1700002680, ciphertext: key.encryptWithRandomness(layout.pack([0n, 0n]), r) },
      { at: 1700002800, ciphertext: key.encryptWithRandomness(layout.pack([245n, 0n]), r + 1n) },
    ];
    const readings = [1700002680, 1700002740].map((time) => ({ time, period: 60, status: 0 }));
    expect(encodeE2ePayload(key, { readings, snapshots }).toString('hex')).toBe(vec('e2e.payload').toString('hex'));
    const back = decodeE2ePayload(key, vec('e2e.payload'));
    expect(back.readings).toEqual(readings);
    expect(back.snapshots.map((s) => [s.at, unpackRegisters(layout, key.decrypt(s.ciphertext), 1)])).toEqual([
      [1700002680, { imports: [0n], exports: [0n] }],
      [1700002800, { imports: [245n], exports: [0n] }],
    ]);
    // The difference of the two snapshots is the interval's energy.
    expect(unpackRegisters(layout, key.decrypt(key.add(back.snapshots[1]!.ciphertext, key.mulPlain(back.snapshots[0]!.ciphertext, -1n))), 1).imports).toEqual([245n]);
  });

  it('§5.1 noised totals: a signed pair re-encrypts to the vector and decrypts back, negative slot included', () => {
    const key = new PrivateKey(BigInt('0x' + vec('e2e.test.p').toString('hex')), BigInt('0x' + vec('e2e.test.q').toString('hex')));
    const m = packNoisy(key, [248n, -2n]);
    expect(m).toBe(key.n - (2n ** 71n - 248n));
    const c = key.encryptWithRandomness(m, 0x0123456789abcdefn + 2n);
    expect(Buffer.from(ciphertextToBytes(key, c)).toString('hex')).toBe(vec('e2e.noisy').toString('hex'));
    expect(unpackNoisy(key, key.decrypt(ciphertextFromBytes(key, vec('e2e.noisy'))))).toEqual([248n, -2n]);
  });

  it('§10.1 derivation 2 of an activation code: one scrypt, then HKDF-SHA-256 per label (node:crypto agrees)', () => {
    const s = activationSecretsSync('ABCD-EFGH-JKLM', 'hh1', 2);
    expect(Buffer.from(s.verifier)).toEqual(vec('activation.v2.verifier'));
    expect(Buffer.from(s.binding)).toEqual(vec('activation.v2.binding-key'));
    expect(Buffer.from(s.stream)).toEqual(vec('activation.v2.stream-key'));
    const master = scryptSync('ABCD-EFGH-JKLM', 'smartermeter/activation/v2/hh1', 32, { N: 1 << 14, r: 8, p: 1 });
    expect(master).toEqual(vec('activation.v2.master'));
    const out = (info: string) => Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), info, 32));
    expect(out('smartermeter/activation/v2/ucs-verifier')).toEqual(hex('activation.v2.verifier'));
    expect(out('smartermeter/activation/v2/binding')).toEqual(hex('activation.v2.binding-key'));
    expect(out('smartermeter/activation/v2/e2e-stream')).toEqual(hex('activation.v2.stream-key'));
    // Derivation 1's documented keys are other values (both derivations stay valid, each for its key sets).
    expect(vec('household-key.binding-key')).not.toEqual(hex('activation.v2.binding-key'));
  });

  it('§11.5 meter-sealed stream: the key from the code, the AAD, the sealed message, and opening it', () => {
    const key = meterStreamKeySync('ABCD-EFGH-JKLM', 'hh1');
    expect(Buffer.from(key)).toEqual(vec('meter-stream.key'));
    // node:crypto's scrypt (OpenSSL) agrees with @noble's on the documented derivation.
    expect(scryptSync('ABCD-EFGH-JKLM', 'smartermeter/e2e-stream/v1/hh1', 32, { N: 1 << 14, r: 8, p: 1 })).toEqual(vec('meter-stream.key'));
    const topic = topics.household('hh1');
    const st = Buffer.from('534d520000000001', 'hex');
    expect(Buffer.from(meterStreamAad(topic, st, 7))).toEqual(vec('meter-stream.aad'));
    const batch = { prevWh: 1000, readings: [{ time: 1700002740, period: 60, importWh: 1004, powerW: 240, status: 0 }] };
    const iv = Buffer.from('000102030405060708090a0b', 'hex');
    expect(sealMeterStream(key, topic, st, 7, streamBody('534d520000000001', batch), iv)).toEqual(vec('meter-stream.payload'));
    expect(parseStreamBody(openMeterStream(key, topic, vec('meter-stream.payload')))).toEqual({ meter: '534d520000000001', ...batch });
    // The independent AES-GCM agrees.
    const e = parseMeterStream(vec('meter-stream.payload'));
    expect(cborDecode(nobleGcmOpen(key, e.iv, e.ciphertext, vec('meter-stream.aad'), 16))).toEqual(streamBody('534d520000000001', batch));
  });

  afterAll(() => {
    // A vector added to the document without a check here fails the suite.
    const all = blocks.filter((b) => b.kind === 'hex').map((b) => b.name);
    expect(all.filter((n) => !checked.has(n))).toEqual([]);
  });
});
