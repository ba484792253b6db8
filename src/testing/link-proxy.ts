import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';

/**
 * The network between the server and the primary-site host. `cut()` swallows
 * every byte both ways on the open connections (no reset: the NBD client only
 * learns of it through its timeout) and refuses new ones; `restore()` drops
 * the dead connections and lets new ones through.
 */
export class Link {
  #server: Server;
  #pairs = new Set<[Socket, Socket]>();
  #cut = false;
  private constructor(server: Server) {
    this.#server = server;
  }
  static async open(targetPort: number): Promise<Link> {
    const server = createServer();
    const link = new Link(server);
    server.on('connection', (guest) => link.#accept(guest, targetPort));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return link;
  }
  get port(): number {
    return (this.#server.address() as { port: number }).port;
  }
  #accept(guest: Socket, targetPort: number): void {
    if (this.#cut) {
      guest.destroy();
      return;
    }
    const host = tcpConnect(targetPort, '127.0.0.1');
    const pair: [Socket, Socket] = [guest, host];
    this.#pairs.add(pair);
    const forward = (from: Socket, to: Socket) =>
      from.on('data', (chunk) => {
        if (!this.#cut) to.write(chunk);
      });
    forward(guest, host);
    forward(host, guest);
    const end = () => {
      guest.destroy();
      host.destroy();
      this.#pairs.delete(pair);
    };
    for (const socket of pair) socket.on('error', end).on('close', end);
  }
  cut(): void {
    this.#cut = true;
  }
  restore(): void {
    for (const pair of this.#pairs) for (const socket of pair) socket.destroy();
    this.#pairs.clear();
    this.#cut = false;
  }
  async close(): Promise<void> {
    this.restore();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
