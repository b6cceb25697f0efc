// Fixed-key vectors. The expected values were computed independently by vectors.py (Python's pow and
// hashlib, nothing from the engine): DJN h derivation, h_s, E(m; r), classic paillier-bigint style
// ciphertexts, CBOR encodings and the key id.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { cborDecode } from '../../../protocol/cbor.js';
import { fromBytes } from '../../../protocol/paillier/arith.js';
import {
  ciphertextId,
  combinePartials,
  decodeCiphertext,
  decodePartial,
  decodePrivateKey,
  decodeShare,
  decodeSigned,
  encodeCiphertext,
  encodePartial,
  encodePrivateKey,
  encodePublicKey,
  encodeShare,
  partialDecrypt,
  PrivateKey,
  splitKey,
} from '../../../protocol/paillier/engine.js';
import { Modulus } from '../../../protocol/paillier/modexp.js';
import { deriveH } from '../../../protocol/paillier/params.js';
import { docBlocks, docHex, PAILLIER_MD } from '../doc.js';

const p = 0xe25b46707355898fbbbfa05a5f1b6d2fbee6164704e6ebac6ce71b991a4284fbn;
const q = 0xef23699156b14a9aa38812b841d80a2450482c11bf0b224f73a907b37fa0b92bn;
const V = {
  n: 0xd37286958f4b11db00293a8d181373ce59eb4a931ea08321624f39f6f52962316d92aa3eb97c1d39f52366b0d78a595f013e7ab1eb14faac3a5388be1d25b929n,
  h: 0xc401f9458f0e4a2326572610d3d7ee925c7892f0ee0f228b3421856a6f31ec424d1644fde8715a1b3d472c96fb406252458d42571a8bd1993baf608035248874n,
  hs: 0x709e08bc3ab027b907d163a4672043271596795c37e80f346ccdeaa671c6b4ddbdb54f30c31694e0b59f94eee96803eed10d31a516be75caef8ed62f8ff2b5d5172dd95005f9dd06b14523c69b9bb985a17ea4c26e819463a9843507c3dfa8798ff7b86cec712f667363b5482ae3e03771db5d02b68d78ab327a0d94d211e79n,
  r1: 0x0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdefn,
  c1: 0x4d916c34a59a3ee8edd84b02fe152d63ab18e3b7ca042046be48b7f2f786a5c9a875e3dd3cff760ef423f83e7c5917f5956a46d631b9c455e1aacccc014faf90b5c00199e7c884c5d8460b3aeb0f15a547bdc5116a0db4a71ae917b32b360b3692b108110108bcc676858dead1e126562479f65952bc7e2312b6c621232a9bd6n,
  c2: 0x6d4a7b4336b000e54e3b50aac8a1db8abe0a4d251e2715d347c60c4f5f17bd344f66141932e622160ad03ef4a453c7884aa18d5c8f8758baf51d85955bcddca680e7701997f02201b89a4d87286fcad9350ee4a9d38c05e94e5e96fa41dda66241b3ffcd6a41dc81ede12b5764c074cfb24f677da1b12a076b7fd93ab6470a1n,
  c3: 0x7618373334ec52416da8e006477a018010586b96aa88122e1317c415e000e9a26bfcf7e4d0a0e25ba376770e0c5dd2e74c7a86969d2bc1f3d03dac52e3ffcdf0cd55c3f8c1235c0dd507a4ee76b6a65b2a1b1bacd9734a1c04e6a776f8e738cdb59ba97880679517d51d4ad7729bc5810a972a5e017bfbea1e1a574562769f85n,
  pub: '82015840d37286958f4b11db00293a8d181373ce59eb4a931ea08321624f39f6f52962316d92aa3eb97c1d39f52366b0d78a595f013e7ab1eb14faac3a5388be1d25b929',
  priv: '84015840d37286958f4b11db00293a8d181373ce59eb4a931ea08321624f39f6f52962316d92aa3eb97c1d39f52366b0d78a595f013e7ab1eb14faac3a5388be1d25b9295820e25b46707355898fbbbfa05a5f1b6d2fbee6164704e6ebac6ce71b991a4284fb5820ef23699156b14a9aa38812b841d80a2450482c11bf0b224f73a907b37fa0b92b',
  kid: '37dae704e920319d',
};

describe('Paillier vectors (512-bit key, computed by vectors.py)', () => {
  const key = new PrivateKey(p, q);

  it('derives h and h_s = h^n mod n^2 as specified', () => {
    expect(key.n).toBe(V.n);
    expect(deriveH(V.n)).toBe(V.h);
    expect(key.hs).toBe(V.hs); // key holder: by CRT
    expect(new Modulus(V.n * V.n).pow(V.h, V.n)).toBe(V.hs); // the public computation (PublicKey.computeHs)
  });

  it('E(m; r) = (1 + m n) h_s^r mod n^2, on the CRT path and on the public path', () => {
    expect(key.encryptWithRandomness(42n, V.r1)).toBe(V.c1);
    expect(key.publicKey.encryptWithRandomness(42n, V.r1)).toBe(V.c1);
    expect(key.encryptWithRandomness(-7n, 5n)).toBe(V.c2);
  });

  it('decrypts the vectors, including a classic g^m r^n ciphertext', () => {
    expect(key.decrypt(V.c1)).toBe(42n);
    expect(decodeSigned(key.decrypt(V.c2), key.n)).toBe(-7n);
    expect(key.decrypt(V.c3)).toBe(123456789n);
    expect(key.decrypt(key.add(V.c1, V.c2))).toBe(35n);
    expect(decodeSigned(key.decrypt(key.mulPlain(V.c1, -3n)), key.n)).toBe(-126n);
  });

  it('serialises keys to the documented CBOR bytes and names the key by SHA-256 of its public encoding', () => {
    expect(encodePublicKey(key).toString('hex')).toBe(V.pub);
    expect(encodePrivateKey(key).toString('hex')).toBe(V.priv);
    expect(key.keyId).toBe(V.kid);
    expect(decodePrivateKey(Buffer.from(V.priv, 'hex')).decrypt(V.c1)).toBe(42n);
  });
});

describe('two-party threshold vectors of docs/paillier.md (computed by vectors.py)', () => {
  const blocks = docBlocks(readFileSync(PAILLIER_MD, 'utf8'), 'docs/paillier.md');
  const used = new Set<string>();
  const vec = (name: string) => {
    used.add(name);
    return docHex(name, blocks);
  };
  const key = new PrivateKey(fromBytes(vec('threshold.p')), fromBytes(vec('threshold.q')));
  const pub = key.publicKey;

  it('is the 512-bit key of the vectors above', () => {
    expect(key.n).toBe(V.n);
  });

  it('splits the key into the documented shares, given the documented d_pes', () => {
    const pesBytes = vec('threshold.pes-share');
    const d1 = fromBytes((cborDecode(pesBytes) as Uint8Array[])[3]!);
    const { pes, guardian } = splitKey(key, () => d1);
    expect(encodeShare(pes).toString('hex')).toBe(pesBytes.toString('hex'));
    expect(encodeShare(guardian).toString('hex')).toBe(vec('threshold.guardian-share').toString('hex'));
  });

  it('decodes the documented shares and ciphertext, makes the documented partials, and combines them into the plaintext', () => {
    const pes = decodeShare(pub, vec('threshold.pes-share'), 'pes');
    const guardian = decodeShare(pub, vec('threshold.guardian-share'), 'guardian');
    const c = decodeCiphertext(pub, vec('threshold.ciphertext'));
    expect(encodeCiphertext(pub, pub.encryptWithRandomness(123456789012345n, 0x00fedcba9876543210fedcba9876543210fedcba9876543210fedcba98765432n)).toString('hex')).toBe(
      vec('threshold.ciphertext').toString('hex'),
    );
    const a = partialDecrypt(pes, c);
    const b = partialDecrypt(guardian, c);
    expect(encodePartial(pub, a).toString('hex')).toBe(vec('threshold.pes-partial').toString('hex'));
    expect(encodePartial(pub, b).toString('hex')).toBe(vec('threshold.guardian-partial').toString('hex'));
    const m = fromBytes(vec('threshold.plaintext'));
    expect(m).toBe(123456789012345n);
    expect(combinePartials(pub, decodePartial(pub, vec('threshold.pes-partial')), decodePartial(pub, vec('threshold.guardian-partial')), c)).toBe(m);
    expect(key.decrypt(c)).toBe(m);
    expect(a.ciphertextId).toEqual(ciphertextId(pub, c));
  });

  it('checks every threshold vector the document has', () => {
    const documented = blocks.filter((b) => b.name.startsWith('threshold.')).map((b) => b.name).sort();
    expect(documented).toHaveLength(8);
    expect([...used].sort()).toEqual(documented);
  });
});
