/**
 * A throw-away certificate authority and a server certificate for 127.0.0.1 and localhost, made with the
 * openssl command-line tool, for the TLS tests (the broker's mqtts/wss, the web apps' https, the browser).
 * @module
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** PEM files and their contents. */
export interface TestCerts {
  /** The CA certificate clients trust. */
  caFile: string;
  ca: Buffer;
  /** The server's certificate (signed by the CA; SAN IP:127.0.0.1, DNS:localhost) and key. */
  certFile: string;
  cert: Buffer;
  keyFile: string;
  key: Buffer;
}

/**
 * Makes a P-256 CA and a server certificate under `dir` (valid one day).
 * @example
 * ```ts
 * const certs = makeTestCerts(dir);
 * await startBroker({ tls: { cert: certs.cert, key: certs.key } });
 * ```
 */
export function makeTestCerts(dir: string): TestCerts {
  const f = (n: string) => join(dir, n);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '1', '-subj', '/CN=Smarter Metering test CA');
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=localhost');
  writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  openssl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.pem'), '-days', '1', '-extfile', f('server.ext'));
  return { caFile: f('ca.pem'), ca: readFileSync(f('ca.pem')), certFile: f('server.pem'), cert: readFileSync(f('server.pem')), keyFile: f('server.key'), key: readFileSync(f('server.key')) };
}
