/**
 * The HTTPS endpoint server agents talk to (contract: POST /v1/enrol, POST
 * /v1/report; text/plain lines both ways). The endpoint's certificate comes
 * from the host's server CA; client certificates are requested on every
 * connection and required everywhere but /v1/enrol, checked against the CA
 * here (CN = the machine). Bodies are bounded and slow clients cut off, so a
 * misbehaving client costs the host one socket, never more; every refusal is
 * one line saying why.
 */
import { X509Certificate } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { HavenError } from '../errors/index.ts';
import { clientCertificateValid } from '../nbd/server-connection.ts';
import type { ServerCa } from './server-ca.ts';
import type { ServerLinks } from './server-links.ts';

export const MAX_AGENT_BODY_BYTES = 64 * 1024;

export interface ServerAgentEndpointOptions {
  ca: Pick<ServerCa, 'caCertPem' | 'certPem' | 'keyPem'>;
  links: Pick<ServerLinks, 'enrol' | 'report'>;
  listen: { host: string; port: number };
  /** Whole request (headers and body) within this long (default 30 s). */
  requestTimeoutMs?: number;
  log?: (line: string) => void;
}

export interface ServerAgentEndpoint {
  readonly address: { host: string; port: number };
  close(): Promise<void>;
}

function reply(response: ServerResponse, status: number, text: string): void {
  if (response.headersSent) {
    response.destroy();
    return;
  }
  response.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
  response.end(text === '' || text.endsWith('\n') ? text : `${text}\n`);
}

/** One line: what went wrong, without stack or newlines. */
function lineOf(message: string): string {
  return message.replace(/\s*\n\s*/g, ' ').slice(0, 400);
}

async function readBody(request: IncomingMessage): Promise<string> {
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > MAX_AGENT_BODY_BYTES) {
    throw new HavenError('payload_too_large', `the body is over ${MAX_AGENT_BODY_BYTES} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > MAX_AGENT_BODY_BYTES) {
      throw new HavenError('payload_too_large', `the body is over ${MAX_AGENT_BODY_BYTES} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export async function startServerAgentEndpoint(
  options: ServerAgentEndpointOptions,
): Promise<ServerAgentEndpoint> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const cas = [new X509Certificate(options.ca.caCertPem)];
  const requestTimeoutMs = options.requestTimeoutMs ?? 30_000;

  /** The machine the verified client certificate names, or null. */
  const machineOf = (request: IncomingMessage): string | null => {
    const socket = request.socket as TLSSocket;
    if (!clientCertificateValid(socket, cas)) return null;
    const cn = socket.getPeerCertificate().subject?.CN;
    return typeof cn === 'string' && cn !== '' ? cn : null;
  };

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const path = (request.url ?? '').split('?')[0];
    if (path !== '/v1/enrol' && path !== '/v1/report') {
      reply(response, 404, `no such endpoint '${String(path).slice(0, 64)}': POST /v1/enrol or /v1/report`);
      request.resume();
      return;
    }
    if (request.method !== 'POST') {
      reply(response, 405, `${path} takes POST, not ${request.method}`);
      request.resume();
      return;
    }
    if (path === '/v1/enrol') {
      const token = /^Bearer\s+(\S{1,512})$/.exec(request.headers.authorization ?? '')?.[1];
      if (token === undefined) {
        reply(response, 401, 'no enrolment token: send Authorization: Bearer TOKEN');
        request.resume();
        return;
      }
      const body = await readBody(request);
      reply(response, 200, await options.links.enrol(token, body));
      return;
    }
    const machineId = machineOf(request);
    if (machineId === null) {
      reply(response, 401, "a client certificate from this host's server CA is required (enrol first)");
      request.resume();
      return;
    }
    const body = await readBody(request);
    reply(response, 200, options.links.report(machineId, body));
  };

  const server: Server = createServer(
    {
      key: options.ca.keyPem,
      cert: options.ca.certPem,
      ca: options.ca.caCertPem,
      // Asked for on every connection, checked per request: enrolment comes before the agent has one.
      requestCert: true,
      rejectUnauthorized: false,
      requestTimeout: requestTimeoutMs,
      headersTimeout: Math.min(10_000, requestTimeoutMs),
      keepAliveTimeout: 5_000,
      maxHeaderSize: 16 * 1024,
    },
    (request, response) => {
      handle(request, response).catch((error: unknown) => {
        if (error instanceof HavenError) {
          reply(response, error.status, lineOf(error.message));
        } else {
          log(`server agent endpoint: ${(error as Error).message}`);
          reply(response, 500, 'the host failed to answer; see its log');
        }
        // The rest of an oversized or refused body is not read.
        if (!request.complete) request.socket.destroySoon();
      });
    },
  );
  server.maxConnections = 256;
  server.on('tlsClientError', () => {
    // A client that fails the TLS handshake (scanner, wrong CA) only loses its own socket.
  });
  server.on('clientError', (_error, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listen.port, options.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address();
  const port = typeof bound === 'object' && bound !== null ? bound.port : options.listen.port;
  return {
    address: { host: options.listen.host, port },
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
