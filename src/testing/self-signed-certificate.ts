import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createSelfSignedCertificate } from '../control/vault-identity.ts';

const execFileAsync = promisify(execFile);

/**
 * Writes an ECDSA key and a self-signed certificate for localhost and
 * 127.0.0.1 that is its own CA, so TLS clients given it as their CA (libnbd,
 * qemu, node) verify the server.
 */
export async function selfSignedCertificate(keyFile: string, certFile: string): Promise<void> {
  const { keyPem, certPem } = await createSelfSignedCertificate({
    hostNames: [],
    commonName: 'localhost',
    days: 2,
    extensions: [
      'basicConstraints=critical,CA:TRUE',
      'keyUsage=digitalSignature,keyCertSign',
      // clientAuth too: OpenSSL refuses a client certificate whose CA's EKU lacks it (INVALID_PURPOSE).
      'extendedKeyUsage=serverAuth,clientAuth',
    ],
  });
  await Promise.all([writeFile(keyFile, keyPem), writeFile(certFile, certPem)]);
}

/**
 * Writes a client key and a certificate for it signed by `caKey`/`caCert`
 * (e.g. a certificate from selfSignedCertificate, which is its own CA): what
 * libnbd and qemu present as client-key.pem and client-cert.pem.
 */
export async function clientCertificate(
  caKey: string,
  caCert: string,
  keyFile: string,
  certFile: string,
): Promise<void> {
  const csr = `${certFile}.csr`;
  await execFileAsync('openssl', [
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-subj',
    '/CN=haven-test-client',
    '-keyout',
    keyFile,
    '-out',
    csr,
  ]);
  try {
    await writeFile(certFile, await signClientRequest(caKey, caCert, await readFile(csr, 'utf8')));
  } finally {
    await rm(csr);
  }
}

/**
 * Signs a PEM certificate request with `caKey`/`caCert` as a client
 * certificate (clientAuth), its subject replaced by `commonName` when given:
 * what a host does for an enrolling server. Returns the certificate's PEM.
 */
export async function signClientRequest(
  caKey: string,
  caCert: string,
  csrPem: string,
  commonName?: string,
): Promise<string> {
  const work = await mkdtemp(join(tmpdir(), 'haven-sign-'));
  try {
    const [csr, ext, cert] = ['req.csr', 'ext', 'cert.pem'].map((f) => join(work, f)) as [
      string,
      string,
      string,
    ];
    await writeFile(csr, csrPem);
    await writeFile(ext, 'basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n');
    await execFileAsync('openssl', [
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      caCert,
      '-CAkey',
      caKey,
      '-set_serial',
      String(Date.now()),
      '-days',
      '2',
      '-extfile',
      ext,
      ...(commonName ? ['-subj', `/CN=${commonName}`] : []),
      '-out',
      cert,
    ]);
    return await readFile(cert, 'utf8');
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
