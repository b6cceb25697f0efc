#!/usr/bin/env python3
"""Independent computation of the Paillier test vectors in vectors.test.ts (Python's own big integers,
hashlib and pow; nothing from the TypeScript engine). Run: python3 vectors.py"""
import hashlib

p = 0xe25b46707355898fbbbfa05a5f1b6d2fbee6164704e6ebac6ce71b991a4284fb
q = 0xef23699156b14a9aa38812b841d80a2450482c11bf0b224f73a907b37fa0b92b
n = p * q
n2 = n * n

def be(x):
    return x.to_bytes((x.bit_length() + 7) // 8, 'big')

def cbor_bytes(b):  # CBOR major type 2 header for lengths < 65536
    l = len(b)
    if l < 24: return bytes([0x40 + l]) + b
    if l < 256: return bytes([0x58, l]) + b
    return bytes([0x59]) + l.to_bytes(2, 'big') + b

# h = -x^2 mod n, x from SHA-512(D || n || ctr) blocks, |n| + 128 bits, mod n (params.ts deriveH)
D = b'smartermetering/paillier/djn-h/v1'
nbytes = (n.bit_length() + 128 + 7) // 8
stream = b''.join(hashlib.sha512(D + be(n) + i.to_bytes(4, 'big')).digest() for i in range((nbytes + 63) // 64))
x = int.from_bytes(stream[:nbytes], 'big') % n
h = (-x * x) % n
hs = pow(h, n, n2)

# E(m; r) = (1 + m n) hs^r mod n^2
def enc(m, r):
    return (1 + m * n) * pow(hs, r, n2) % n2

# classic Paillier (paillier-bigint style): g^m r^n with g = n + 1
def enc_classic(m, r):
    return pow(n + 1, m, n2) * pow(r, n, n2) % n2

lam = (p - 1) * (q - 1)
mu = pow(lam, -1, n)
def dec(c):
    return (pow(c, lam, n2) - 1) // n * mu % n

pub = bytes([0x82, 0x01]) + cbor_bytes(be(n))
priv = bytes([0x84, 0x01]) + cbor_bytes(be(n)) + cbor_bytes(be(p)) + cbor_bytes(be(q))
kid = hashlib.sha256(pub).digest()[:8]

r1 = 0x0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef  # < 2^256 = 2^(|n|/2)
c1 = enc(42, r1)
c2 = enc(n - 7, 5)   # -7
r3 = 0x1f2e3d4c5b6a79880123456789abcdef
c3 = enc_classic(123456789, r3)
assert dec(c1) == 42 and dec(c2) == n - 7 and dec(c3) == 123456789
print('n  =', hex(n))
print('x  =', hex(x))
print('h  =', hex(h))
print('hs =', hex(hs))
print('c1 = E(42; r1) =', hex(c1))
print('c2 = E(-7; 5) =', hex(c2))
print('c3 = classic E(123456789; r3) =', hex(c3))
print('sum = c1 c2 -> ', dec(c1 * c2 % n2))
print('mul = c1^-3  -> ', dec(pow(c1, -3, n2)) - n)
print('pub =', pub.hex())
print('priv =', priv.hex())
print('kid =', kid.hex())

# --- Two-party threshold decryption (protocol/paillier/threshold.ts; docs/paillier.md "Two-party threshold
# decryption", the ```hex name=threshold.*``` blocks). Prints those blocks.
from math import gcd
SIGMA = 128
lam_c = (p - 1) * (q - 1) // gcd(p - 1, q - 1)          # Carmichael lambda(n)
d0 = lam_c * pow(lam_c, -1, n)                          # = 0 mod lambda, = 1 mod n
order = n * lam_c
R = n2 << SIGMA
d = d0 if d0 >= R else d0 + ((R - d0 + order - 1) // order) * order
assert d % lam_c == 0 and d % n == 1 and R <= d < R + order
d1 = int.from_bytes(b''.join(hashlib.sha512(b'smartermetering/paillier/threshold-vector/d1' + bytes([i])).digest() for i in range(3)), 'big') % R
d2 = d - d1
assert 0 < d1 < R and 0 < d2 < R + n2

def share(party, di):
    return bytes([0x84, 0x01]) + cbor_bytes(kid) + bytes([party]) + cbor_bytes(be(di))

clen = (2 * n.bit_length() + 7) // 8
m_t = 123456789012345
r_t = 0x00fedcba9876543210fedcba9876543210fedcba9876543210fedcba98765432
ct = enc(m_t, r_t)
ct_cbor = bytes([0x83, 0x01]) + cbor_bytes(kid) + cbor_bytes(ct.to_bytes(clen, 'big'))
cid = hashlib.sha256(ct_cbor).digest()[:16]
pa1 = pow(ct, d1, n2)
pa2 = pow(ct, d2, n2)
def partial(party, v):
    return bytes([0x85, 0x01]) + cbor_bytes(kid) + bytes([party]) + cbor_bytes(cid) + cbor_bytes(v.to_bytes(clen, 'big'))
x_t = pa1 * pa2 % n2
assert (x_t - 1) % n == 0 and (x_t - 1) // n == m_t == dec(ct)
assert (pa1 - 1) % n != 0 and (pa2 - 1) % n != 0   # neither partial alone has the form 1 + m n

def block(name, b):
    h = b.hex()
    print(f'```hex name={name}')
    for i in range(0, len(h), 96):
        print(h[i:i + 96])
    print('```')

print()
block('threshold.p', be(p))
block('threshold.q', be(q))
block('threshold.pes-share', share(1, d1))
block('threshold.guardian-share', share(2, d2))
block('threshold.ciphertext', ct_cbor)
block('threshold.pes-partial', partial(1, pa1))
block('threshold.guardian-partial', partial(2, pa2))
block('threshold.plaintext', be(m_t))
