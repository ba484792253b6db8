import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { test } from 'node:test';
import { certificateFingerprint, generateVaultIdentity, sameFingerprint } from './vault-identity.ts';

test('generateVaultIdentity makes a P-256 key and a self-signed certificate for the given names', async () => {
  const identity = await generateVaultIdentity({ hostNames: ['vault.example', '10.0.0.5'] });
  const cert = new X509Certificate(identity.certPem);
  const key = createPrivateKey(identity.keyPem);
  assert.equal(key.asymmetricKeyType, 'ec');
  assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  assert.ok(cert.checkPrivateKey(key));
  assert.ok(cert.verify(cert.publicKey), 'self-signed');
  for (const name of ['DNS:vault.example', 'IP Address:10.0.0.5', 'DNS:localhost', 'IP Address:127.0.0.1']) {
    assert.ok(cert.subjectAltName?.includes(name), `${name} in ${cert.subjectAltName}`);
  }
  assert.equal(identity.fingerprint, cert.fingerprint256);
  assert.equal(certificateFingerprint(identity.certPem), cert.fingerprint256);

  const other = await generateVaultIdentity();
  assert.notEqual(other.fingerprint, identity.fingerprint);
});

test('fingerprints compare regardless of case and separators', () => {
  const f = 'AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89';
  assert.ok(sameFingerprint(f, f.toLowerCase().replaceAll(':', '')));
  assert.ok(!sameFingerprint(f, f.replace('AB', 'AC')));
  assert.ok(!sameFingerprint('', ''));
});

test('names that would break the openssl command line are refused', async () => {
  await assert.rejects(generateVaultIdentity({ hostNames: ['a,DNS:evil'] }), /not a DNS name or IP address/);
});
