import { readFile, rm, writeFile } from 'node:fs/promises';
import { createSelfSignedCertificate } from '../control/vault-identity.ts';
import { newKeyRequest, signClientCsr } from '../host/server-ca.ts';

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
  await newKeyRequest('haven-test-client', keyFile, csr);
  try {
    await writeFile(
      certFile,
      await signClientCsr({ key: caKey, cert: caCert }, await readFile(csr, 'utf8'), 'haven-test-client'),
    );
  } finally {
    await rm(csr);
  }
}
