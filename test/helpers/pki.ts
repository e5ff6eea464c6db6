// A throwaway PKI for the tests of encrypted DNS (the DoT and DoH carriers'
// unit tests, the interop tests against Unbound): a test CA, another CA
// nobody trusts, and server certificates made with openssl, as files (for
// Unbound's config, pvdns's tls.caFile, dig's +tls-ca) and as PEM text (for
// node:tls and node:http2 servers, Trust.setExtra).

import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Set PVDNS_INTEROP_KEEP=1 to keep the keys and certificates for a look after a failure. */
const KEEP = process.env.PVDNS_INTEROP_KEEP === '1';

/** A certificate and its key, as PEM files and as their PEM text. */
export interface Leaf {
  /** The key's file. */
  key: string;
  /** The certificate's file. */
  cert: string;
  /** The key and certificate themselves: spread into tls.createServer's options. */
  pem: { key: string; cert: string };
}

/** What one leaf certificate says; its subject CN is its first DNS name (else its first address, else its name). */
export interface LeafSpec {
  /** subjectAltName DNS names. */
  dns?: string[];
  /** subjectAltName IP addresses. */
  ips?: string[];
  /** Valid for one day in January 2020 only. */
  expired?: boolean;
  /** Signed by the CA nobody trusts instead of the test CA. */
  unknownCa?: boolean;
}

export interface TestPki<K extends string = string> {
  /** The test CA (PEM file): what pvdns's tls.caFile and dig's +tls-ca name. */
  caFile: string;
  /** The test CA's certificate itself. */
  caPem: string;
  leaves: Record<K, Leaf>;
  /** remove deletes the keys and certificates (also done when the process exits). */
  remove(): void;
}

/** openssl runs openssl in `dir` without blocking the event loop; its output is in the error when it fails. */
function openssl(dir: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd: dir, encoding: 'utf8', timeout: 15_000 }, (err, stdout, stderr) => {
      if (!err) return resolve();
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return reject(new Error('openssl not found: the tests of encrypted DNS need the Debian package openssl (apt-get install openssl)'));
      }
      reject(new Error(`openssl ${args.join(' ')} failed:\n${stdout}${stderr}`));
    });
  });
}

/**
 * testPki makes two throwaway CAs (the test CA, and another nobody trusts),
 * each valid for two days, and a leaf per spec (basicConstraints CA:FALSE,
 * extendedKeyUsage serverAuth, P-256 keys), with `openssl ca` so a leaf may
 * be given dates in the past (openssl 3.0's `x509 -req` cannot).
 */
export async function testPki<K extends string>(specs: Record<K, LeafSpec>): Promise<TestPki<K>> {
  const dir = mkdtempSync(join(tmpdir(), `pvdns-pki-${process.pid}-`));
  const f = (n: string): string => join(dir, n);
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  try {
    for (const ca of ['ca', 'other-ca']) {
      await openssl(dir, ['req', '-x509', ...newKey, '-keyout', f(`${ca}.key`), '-out', f(`${ca}.pem`), '-days', '2',
        '-subj', `/CN=pvdns test ${ca}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
      mkdirSync(f(`${ca}.d`));
      writeFileSync(f(`${ca}.d/index.txt`), '');
      writeFileSync(f(`${ca}.d/serial`), '01\n');
    }
    const leaves = {} as Record<K, Leaf>;
    for (const [name, spec] of Object.entries(specs) as [K, LeafSpec][]) {
      const ca = spec.unknownCa ? 'other-ca' : 'ca';
      const san = [...(spec.dns ?? []).map((d) => `DNS:${d}`), ...(spec.ips ?? []).map((a) => `IP:${a}`)].join(',');
      // A minimal `openssl ca` configuration: its own database per CA, the leaf's extensions here.
      writeFileSync(f(`${name}.cnf`), `[ca]
default_ca = test
[test]
database = ${f(`${ca}.d/index.txt`)}
new_certs_dir = ${f(`${ca}.d`)}
serial = ${f(`${ca}.d/serial`)}
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
[leaf]
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth
subjectAltName = ${san}
`);
      await openssl(dir, ['req', ...newKey, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${spec.dns?.[0] ?? spec.ips?.[0] ?? name}`]);
      const dates = spec.expired ? ['-startdate', '20200101000000Z', '-enddate', '20200102000000Z'] : ['-days', '2'];
      await openssl(dir, ['ca', '-batch', '-notext', '-config', f(`${name}.cnf`), '-cert', f(`${ca}.pem`), '-keyfile', f(`${ca}.key`),
        '-in', f(`${name}.csr`), '-out', f(`${name}.pem`), '-extensions', 'leaf', ...dates]);
      const key = f(`${name}.key`);
      const cert = f(`${name}.pem`);
      leaves[name] = { key, cert, pem: { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8') } };
    }
    const remove = (): void => {
      if (!KEEP) rmSync(dir, { recursive: true, force: true });
    };
    process.once('exit', remove);
    return { caFile: f('ca.pem'), caPem: readFileSync(f('ca.pem'), 'utf8'), leaves, remove };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
