/**
 * The host's CA for physical servers: it signs the host's own certificate
 * for the servers' endpoint (agent HTTPS and NBD, for its tls hostname and
 * address) and each enrolled server's client certificate (CN = its machine
 * id, clientAuth), which is how the NBD listener knows whose legs a
 * connection may open. Made once with the openssl CLI (node:crypto cannot
 * make certificates) and kept in the host's data directory, keys 0600.
 */
import { execFile } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createSelfSignedCertificate } from '../control/vault-identity.ts';
import { HavenError } from '../errors/index.ts';
import { writeFileAtomic } from '../storage/atomic-file.ts';
import { readOptionalText } from '../storage/optional-file.ts';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from '../storage/private-files.ts';

const run = promisify(execFile);

/** Clients of the servers' endpoint check names, not dates; long-lived like the vault's identity. */
const DAYS = 36500;
const MAX_CSR_BYTES = 16 * 1024;

export interface ServerCa {
  caCertPem: string;
  /** The endpoint's certificate (signed by the CA) and key, for node:https and the NBD listener. */
  certPem: string;
  keyPem: string;
  tlsHostname: string;
  /** Signs a server's CSR into its client certificate: CN = machineId, clientAuth; the CSR's subject is ignored. */
  signClient(csrPem: string, machineId: string): Promise<string>;
}

async function openssl(args: string[], what: string): Promise<void> {
  try {
    await run('openssl', args);
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new HavenError('internal', `openssl could not ${what}: ${stderr || (error as Error).message}`);
  }
}

/** Writes a file readable by its owner only (keys). */
async function writePrivate(path: string, text: string): Promise<void> {
  await writeFileAtomic(path, text);
  await chmod(path, PRIVATE_FILE_MODE);
}

function coversName(certPem: string, name: string): boolean {
  const cert = new X509Certificate(certPem);
  return isIP(name) ? cert.checkIP(name) !== undefined : cert.checkHost(name) !== undefined;
}

/**
 * Opens (or makes, the first time) the server CA in `dir`, and the endpoint
 * certificate for `tlsHostname` and `address`; a certificate that no longer
 * covers them (the operator changed `--server-listen`) is made again.
 */
export async function openServerCa(
  dir: string,
  names: { tlsHostname: string; address: string },
): Promise<ServerCa> {
  for (const name of [names.tlsHostname, names.address]) {
    if (!/^[A-Za-z0-9.:-]{1,253}$/.test(name)) {
      throw new HavenError('validation_failed', `'${name.slice(0, 64)}' is not a DNS name or IP address`, {
        field: 'tlsHostname',
      });
    }
  }
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  const path = (file: string) => join(dir, file);
  let [caKeyPem, caCertPem] = await Promise.all([
    readOptionalText(path('ca-key.pem')),
    readOptionalText(path('ca-cert.pem')),
  ]);
  if (caKeyPem === null || caCertPem === null) {
    const made = await createSelfSignedCertificate({
      hostNames: [],
      commonName: 'haven-server-ca',
      days: DAYS,
      extensions: ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign'],
    });
    caKeyPem = made.keyPem;
    caCertPem = made.certPem;
    await writePrivate(path('ca-key.pem'), caKeyPem);
    await writeFileAtomic(path('ca-cert.pem'), caCertPem);
  }
  let [keyPem, certPem] = await Promise.all([
    readOptionalText(path('server-key.pem')),
    readOptionalText(path('server-cert.pem')),
  ]);
  const covered =
    keyPem !== null &&
    certPem !== null &&
    new X509Certificate(certPem).checkIssued(new X509Certificate(caCertPem)) &&
    coversName(certPem, names.tlsHostname) &&
    coversName(certPem, names.address);
  if (!covered) {
    ({ keyPem, certPem } = await issueEndpointCertificate(dir, names));
    await writePrivate(path('server-key.pem'), keyPem);
    await writeFileAtomic(path('server-cert.pem'), certPem);
  }
  const caFiles = { key: path('ca-key.pem'), cert: path('ca-cert.pem') };
  return {
    caCertPem,
    certPem: certPem as string,
    keyPem: keyPem as string,
    tlsHostname: names.tlsHostname,
    signClient: (csrPem, machineId) => signClientCsr(caFiles, csrPem, machineId),
  };
}

function sanOf(names: { tlsHostname: string; address: string }): string {
  return [...new Set([names.tlsHostname, names.address])]
    .map((name) => (isIP(name) ? `IP:${name}` : `DNS:${name}`))
    .join(',');
}

async function issueEndpointCertificate(
  dir: string,
  names: { tlsHostname: string; address: string },
): Promise<{ keyPem: string; certPem: string }> {
  const work = await mkdtemp(join(dir, 'issue-'));
  try {
    const file = (name: string) => join(work, name);
    await writeFile(
      file('ext'),
      `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=${sanOf(names)}\n`,
    );
    await newKeyRequest(names.tlsHostname, file('key.pem'), file('csr.pem'));
    await signCsr(
      join(dir, 'ca-key.pem'),
      join(dir, 'ca-cert.pem'),
      file('csr.pem'),
      names.tlsHostname,
      file('ext'),
      file('cert.pem'),
    );
    const [keyPem, certPem] = await Promise.all([
      readFile(file('key.pem'), 'utf8'),
      readFile(file('cert.pem'), 'utf8'),
    ]);
    return { keyPem, certPem };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Makes an EC (P-256) key and a certificate signing request for it, as the server agent does for itself. */
export async function newKeyRequest(commonName: string, keyFile: string, csrFile: string): Promise<void> {
  await openssl(
    [
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-subj',
      `/CN=${commonName}`,
      '-keyout',
      keyFile,
      '-out',
      csrFile,
    ],
    'make a key and its signing request',
  );
}

async function signCsr(
  caKey: string,
  caCert: string,
  csr: string,
  cn: string,
  ext: string,
  out: string,
): Promise<void> {
  await openssl(
    [
      'x509',
      '-req',
      '-in',
      csr,
      '-subj',
      `/CN=${cn}`,
      '-CA',
      caCert,
      '-CAkey',
      caKey,
      '-set_serial',
      `0x${randomBytes(16).toString('hex')}`,
      '-days',
      String(DAYS),
      '-sha256',
      '-extfile',
      ext,
      '-out',
      out,
    ],
    'sign a certificate',
  );
}

/** Refuses (400) a body that is not one PEM certificate signing request of a sane size. */
export function checkCsrPem(csrPem: string): void {
  if (
    Buffer.byteLength(csrPem) > MAX_CSR_BYTES ||
    !/^-----BEGIN (NEW )?CERTIFICATE REQUEST-----\r?\n[A-Za-z0-9+/=\r\n]+-----END (NEW )?CERTIFICATE REQUEST-----\s*$/.test(
      `${csrPem.trim()}\n`,
    )
  ) {
    throw new HavenError(
      'bad_request',
      'the body is not one PEM certificate signing request (-----BEGIN CERTIFICATE REQUEST-----)',
      { field: 'csr' },
    );
  }
}

/**
 * Signs a server's certificate signing request with the CA's key and
 * certificate files: CN = `machineId`, clientAuth. A malformed one is a clear 400.
 */
export async function signClientCsr(
  ca: { key: string; cert: string },
  csrPem: string,
  machineId: string,
): Promise<string> {
  checkCsrPem(csrPem);
  const work = await mkdtemp(join(ca.key, '..', 'sign-'));
  try {
    const file = (name: string) => join(work, name);
    await writeFile(file('csr.pem'), csrPem);
    await writeFile(
      file('ext'),
      'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n',
    );
    try {
      await run('openssl', ['req', '-in', file('csr.pem'), '-verify', '-noout']);
    } catch {
      throw new HavenError(
        'bad_request',
        'the certificate signing request is damaged or its signature does not verify',
        {
          field: 'csr',
        },
      );
    }
    await signCsr(ca.key, ca.cert, file('csr.pem'), machineId, file('ext'), file('cert.pem'));
    return await readFile(file('cert.pem'), 'utf8');
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
