/**
 * The server agent's side of the agents' endpoint, for tests: a key and CSR
 * made by openssl as the agent makes them (any subject), and one POST over
 * node:https checking the endpoint's certificate against the server CA.
 */

import { readFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { newKeyRequest } from '../host/server-ca.ts';
import { runOk } from './nbd-test-fixture.ts';

export interface ServerAgentKey {
  keyPem: string;
  csrPem: string;
}

/** Makes `client-key.pem` and `client.csr` in `dir` (made if absent). */
export async function serverAgentKey(dir: string): Promise<ServerAgentKey> {
  await runOk('mkdir', ['-p', dir]);
  await newKeyRequest('whatever-the-server-says', join(dir, 'client-key.pem'), join(dir, 'client.csr'));
  return {
    keyPem: await readFile(join(dir, 'client-key.pem'), 'utf8'),
    csrPem: await readFile(join(dir, 'client.csr'), 'utf8'),
  };
}

export interface AgentPost {
  port: number;
  tlsHostname: string;
  caCertPem: string;
  path: string;
  body: string | Buffer;
  token?: string;
  /** The client certificate the endpoint issued, with its key. */
  client?: { keyPem: string; certPem: string };
}

export function postToServerAgentEndpoint(post: AgentPost): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: post.port,
        path: post.path,
        method: 'POST',
        servername: post.tlsHostname,
        ca: post.caCertPem,
        ...(post.client ? { key: post.client.keyPem, cert: post.client.certPem } : {}),
        headers: {
          'content-type': 'text/plain',
          ...(post.token === undefined ? {} : { authorization: `Bearer ${post.token}` }),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => {
          text += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(post.body);
  });
}
