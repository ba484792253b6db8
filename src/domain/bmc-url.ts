import { HavenError } from '../errors/index.ts';
import type { ServerBmc } from './model.ts';

/** IPMI's RMCP+ port. */
export const IPMI_PORT = 623;

/** A server's BMC as an operator types it: `ipmi://USER@HOST[:PORT][?cipher=N]`, never with a password. */
export function bmcUrlOf(bmc: ServerBmc): string {
  const host = bmc.address.includes(':') ? `[${bmc.address}]` : bmc.address;
  const cipher = bmc.cipherSuite == null ? '' : `?cipher=${bmc.cipherSuite}`;
  return `${bmc.protocol}://${bmc.user}@${host}:${bmc.port}${cipher}`;
}

/** Parses `ipmi://USER@HOST[:PORT][?cipher=N]`; a refusal names `field` and the form expected. */
export function parseBmcUrl(text: string, field = 'bmc'): ServerBmc {
  // A password typed into the URL is never echoed back.
  const shown = text.replace(/^([a-z]+:\/\/[^@/:]*):[^@/]*@/i, '$1:…@');
  const refused = (why: string) =>
    new HavenError(
      'bad_request',
      `${field}: '${shown}' ${why}; expected ipmi://USER@HOST[:PORT][?cipher=N] (the password goes in a file of its own)`,
      { field },
    );
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw refused('is not a URL');
  }
  if (url.protocol !== 'ipmi:')
    throw refused(`uses '${url.protocol.replace(/:$/, '')}' (only ipmi is supported)`);
  if (url.password !== '') throw refused('holds a password');
  const user = decodeURIComponent(url.username);
  if (user === '') throw refused('names no user');
  const address = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (address === '') throw refused('names no host');
  if (url.pathname !== '' && url.pathname !== '/') throw refused('has a path');
  const cipher = url.searchParams.get('cipher');
  const cipherSuite = cipher === null ? null : Number(cipher);
  if (cipherSuite !== null && !(Number.isInteger(cipherSuite) && cipherSuite >= 0 && cipherSuite <= 17)) {
    throw refused('has a cipher suite that is not 0-17');
  }
  return {
    protocol: 'ipmi',
    address,
    port: url.port === '' ? IPMI_PORT : Number(url.port),
    user,
    cipherSuite,
  };
}
