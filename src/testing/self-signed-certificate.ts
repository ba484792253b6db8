import { dirname } from 'node:path';
import { runOk } from './nbd-test-fixture.ts';

/**
 * Writes an ECDSA key and a self-signed certificate for localhost and
 * 127.0.0.1 that is its own CA, so TLS clients given it as their CA (libnbd,
 * qemu, node) verify the server.
 */
export async function selfSignedCertificate(keyFile: string, certFile: string): Promise<void> {
  await runOk(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      '2',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=digitalSignature,keyCertSign',
      '-addext',
      'extendedKeyUsage=serverAuth',
    ],
    { cwd: dirname(keyFile) },
  );
}
