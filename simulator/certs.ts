/**
 * Throwaway certificates for the simulator: a CA, a server certificate for localhost/127.0.0.1 (and
 * kite-simulator, its docker-compose service name) and a client certificate (PEM, and a PFX with a random password, the form Kite support hands out). Made with the openssl
 * CLI (Node can parse but not issue certificates), EC P-256 so that generation and handshakes are quick, and
 * cached in the caller's folder until a week before they expire.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface DevCertificates {
  dir: string;
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  /** The client certificate, key and CA as PKCS#12, protected by the password in `passphraseFile`. */
  pfxFile: string;
  passphraseFile: string;
}

const FILES = {
  caFile: 'ca.pem',
  serverCertFile: 'server.pem',
  serverKeyFile: 'server.key',
  clientCertFile: 'client.pem',
  clientKeyFile: 'client.key',
  pfxFile: 'client.pfx',
  passphraseFile: 'client.pfx.pass',
} as const;

const WEEK = 7 * 86_400_000;

function paths(dir: string): DevCertificates {
  const out = { dir } as DevCertificates;
  for (const [k, file] of Object.entries(FILES)) out[k as keyof typeof FILES] = path.join(dir, file);
  return out;
}

function usable(c: DevCertificates): boolean {
  if (!Object.keys(FILES).every((k) => existsSync(c[k as keyof typeof FILES]))) return false;
  try {
    return [c.caFile, c.serverCertFile, c.clientCertFile].every(
      (f) => Date.parse(new X509Certificate(readFileSync(f)).validTo) - Date.now() > WEEK
    );
  } catch {
    return false;
  }
}

function openssl(cwd: string, args: string[]): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim();
    throw new Error(
      `openssl ${args[0]} failed while making simulator certificates: ${stderr || (err as Error).message}`
    );
  }
}

function issue(dir: string, name: string, subject: string, ext: string): void {
  const serial = `0x${randomBytes(8).toString('hex')}`;
  writeFileSync(path.join(dir, `${name}.ext`), ext);
  openssl(dir, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`]);
  openssl(dir, ['req', '-new', '-key', `${name}.key`, '-subj', subject, '-out', `${name}.csr`]);
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', serial,
    '-days', '825', '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.pem`]); // prettier-ignore
}

function generate(dir: string): void {
  openssl(dir, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'ca.key']);
  openssl(dir, ['req', '-x509', '-new', '-key', 'ca.key', '-sha256', '-days', '1825', '-subj',
    '/O=Kite Simulator/CN=Kite Simulator Test CA', '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', 'ca.pem']); // prettier-ignore
  issue(
    dir,
    'server',
    '/O=Kite Simulator/CN=localhost',
    [
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth',
      // kite-simulator: the service name under which docker-compose.yml's worker reaches it.
      'subjectAltName=DNS:localhost,DNS:kite-simulator,IP:127.0.0.1,IP:::1',
    ].join('\n')
  );
  issue(
    dir,
    'client',
    '/O=Kite Simulator/CN=kite-simulator-client',
    ['basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature', 'extendedKeyUsage=clientAuth'].join('\n')
  );
  const passphrase = randomBytes(12).toString('base64url');
  writeFileSync(path.join(dir, FILES.passphraseFile), passphrase, { mode: 0o600 });
  openssl(dir, ['pkcs12', '-export', '-in', 'client.pem', '-inkey', 'client.key', '-certfile', 'ca.pem',
    '-out', 'client.pfx', '-passout', `file:${FILES.passphraseFile}`]); // prettier-ignore
}

/**
 * Returns the certificates in `dir`, making them first when missing or close to expiry. Generation happens in a
 * sibling temporary folder that is renamed into place, so concurrent callers never see half a set.
 */
export function ensureDevCertificates(dir: string): DevCertificates {
  const target = path.resolve(dir);
  const certs = paths(target);
  if (usable(certs)) return certs;
  mkdirSync(path.dirname(target), { recursive: true });
  const tmp = `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  mkdirSync(tmp, { mode: 0o700 });
  try {
    generate(tmp);
    rmSync(target, { recursive: true, force: true });
    renameSync(tmp, target);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    if (usable(certs)) return certs; // another process won the race
    throw err;
  }
  return certs;
}
