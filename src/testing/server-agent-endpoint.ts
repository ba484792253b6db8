import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { signClientCsr } from '../host/server-ca.ts';
import { until } from './until.ts';

/** One report as the endpoint received it: its key lines, parsed as the contract writes them. */
export interface ReceivedReport {
  /** CN of the client certificate that sent it. */
  machine: string;
  hostname: string;
  version: string;
  state: string;
  /** The body as sent (for the host's own parser). */
  body: string;
  disks: Array<{
    diskId: string;
    array: string;
    legs: string;
    action: string;
    percent: string;
    dirty: string;
  }>;
}

export interface AgentEndpointOptions {
  /** The server CA's key and certificate files: the endpoint's own certificate, and what signs the agent's request. */
  caKey: string;
  caCert: string;
  /** What the host would answer a valid enrolment, given the endpoint's port: the config lines of the contract (certificate appended here). */
  configLines: (agentPort: number) => readonly string[];
  machineId: string;
  token: string;
}

/**
 * The host's agent endpoint in miniature (POST /v1/enrol, POST /v1/report of
 * the server contract), over real TLS with the CA's certificate, so the
 * server agent's openssl calls are tested against a real peer until the host
 * side serves them. The token works once; reports need a client certificate
 * from the CA.
 */
export class AgentEndpoint {
  readonly reports: ReceivedReport[] = [];
  /** Enrolment refusals answered, with the reason sent. */
  readonly refusals: string[] = [];
  #commands: string[] = [];
  #server: Server;
  #options: AgentEndpointOptions;
  #tokenUsed = false;

  private constructor(server: Server, options: AgentEndpointOptions) {
    this.#server = server;
    this.#options = options;
  }

  static async start(options: AgentEndpointOptions, listenHost = '127.0.0.1'): Promise<AgentEndpoint> {
    const [key, cert] = await Promise.all([readFile(options.caKey), readFile(options.caCert)]);
    // requestCert without rejecting: enrolment comes before the agent has a certificate.
    const server = createServer({ key, cert, ca: cert, requestCert: true, rejectUnauthorized: false });
    const endpoint = new AgentEndpoint(server, options);
    server.on('request', (req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => {
        body += chunk;
      });
      req.on('end', () => {
        endpoint
          .#answer(
            req.method ?? '',
            req.url ?? '',
            req.headers.authorization ?? '',
            body,
            req.socket as TLSSocket,
          )
          .then(
            ([status, text]) => res.writeHead(status, { 'content-type': 'text/plain' }).end(text),
            (error: Error) => res.writeHead(500).end(`${error.message}\n`),
          );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, listenHost, resolve));
    return endpoint;
  }

  get port(): number {
    return (this.#server.address() as { port: number }).port;
  }

  /** Rides on the answer to the next report. */
  queue(command: string): void {
    this.#commands.push(command);
  }

  /** The first report (from index `from`) that `match` accepts. */
  async waitForReport(
    match: (report: ReceivedReport) => boolean,
    timeoutMs: number,
    from = 0,
  ): Promise<ReceivedReport> {
    return until('a matching agent report', async () => this.reports.slice(from).find(match), { timeoutMs });
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #answer(
    method: string,
    url: string,
    authorization: string,
    body: string,
    socket: TLSSocket,
  ): Promise<[number, string]> {
    if (method === 'POST' && url === '/v1/enrol') {
      const { token, machineId, caKey, caCert, configLines } = this.#options;
      if (authorization !== `Bearer ${token}` || this.#tokenUsed) {
        const reason = `enrolment token refused: unknown, used or expired`;
        this.refusals.push(reason);
        return [401, `${reason}\n`];
      }
      this.#tokenUsed = true;
      const certificate = await signClientCsr({ key: caKey, cert: caCert }, body, machineId);
      return [200, `${configLines(this.port).join('\n')}\n\n${certificate}`];
    }
    if (method === 'POST' && url === '/v1/report') {
      if (!socket.authorized)
        return [
          403,
          `a report needs a client certificate from the server CA (${String(socket.authorizationError)})\n`,
        ];
      const report: ReceivedReport = {
        machine: String(socket.getPeerCertificate().subject?.CN ?? ''),
        hostname: '',
        version: '',
        state: '',
        body,
        disks: [],
      };
      for (const line of body.split('\n')) {
        const [key, ...words] = line.trim().split(/\s+/);
        if (key === 'hostname') report.hostname = words[0] ?? '';
        else if (key === 'version') report.version = words[0] ?? '';
        else if (key === 'state') report.state = words[0] ?? '';
        else if (key === 'disk') {
          const [diskId = '', array = '', legs = '', action = '', percent = '', dirty = ''] = words;
          report.disks.push({ diskId, array, legs, action, percent, dirty });
        }
      }
      this.reports.push(report);
      const commands = this.#commands.splice(0);
      return [200, commands.map((c) => `${c}\n`).join('')];
    }
    return [404, `no ${method} ${url} here\n`];
  }
}
