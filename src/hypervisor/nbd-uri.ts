import { HavenError } from '../errors/index.ts';

/** QEMU's `SocketAddress` for a `-blockdev` of driver `nbd`. */
export type NbdServer = { type: 'unix'; path: string } | { type: 'inet'; host: string; port: string };

export interface NbdTarget {
  server: NbdServer;
  /** Empty string: the server's default export. */
  export: string;
}

/**
 * Parses the NBD URIs Haven hands out (the NBD URI spec's subset we use):
 * `nbd+unix:///EXPORT?socket=PATH` and `nbd://HOST[:PORT]/EXPORT`.
 * TLS (`nbds`) is not something a local hypervisor attachment needs.
 */
export function parseNbdUri(uri: string): NbdTarget {
  const bad = (why: string) =>
    new HavenError('validation_failed', `disk URI '${uri}' ${why}`, {
      field: 'nbdUri',
      allowed: ['nbd+unix:///EXPORT?socket=PATH', 'nbd://HOST:PORT/EXPORT'],
    });
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw bad('is not a URI');
  }
  const exportName = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (url.protocol === 'nbd+unix:') {
    if (url.host !== '') throw bad('must not name a host (nbd+unix:///EXPORT?socket=PATH)');
    const path = url.searchParams.get('socket');
    if (!path?.startsWith('/')) throw bad('needs an absolute ?socket= path');
    return { server: { type: 'unix', path }, export: exportName };
  }
  if (url.protocol === 'nbd:') {
    if (!url.hostname) throw bad('has no host');
    if ([...url.searchParams.keys()].length > 0) throw bad('has query parameters nbd:// does not take');
    // IPv6 literals come bracketed from URL; QEMU wants them bare.
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    return { server: { type: 'inet', host, port: url.port || '10809' }, export: exportName };
  }
  throw bad(`has scheme '${url.protocol.replace(/:$/, '')}', not nbd or nbd+unix`);
}
