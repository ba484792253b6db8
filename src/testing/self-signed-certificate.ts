import { writeFile } from 'node:fs/promises';
import { createSelfSignedCertificate } from '../control/vault-identity.ts';

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
