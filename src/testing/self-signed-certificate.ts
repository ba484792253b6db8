import { execFile } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
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
      'extendedKeyUsage=serverAuth',
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
  const ext = `${certFile}.ext`;
  await writeFile(ext, 'basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n');
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
  await execFileAsync('openssl', [
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    caCert,
    '-CAkey',
    caKey,
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    ext,
    '-out',
    certFile,
  ]);
  await Promise.all([rm(csr), rm(ext)]);
}
