import { createConnection } from 'node:net';
import { HavenError } from '../errors/index.ts';

/**
 * Runs one QMP command on a fresh connection and returns its `return` value
 * (greeting, capabilities negotiation, command, close). Enough for tests to
 * press the power button; the product's QEMU driver keeps its own session.
 */
export function qmpExecute(
  socketPath: string,
  command: string,
  args?: Record<string, unknown>,
  timeoutMs = 10_000,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    let buffered = '';
    let stage: 'greeting' | 'capabilities' | 'command' = 'greeting';
    const fail = (error: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    const timer = setTimeout(
      () =>
        fail(
          new HavenError('unreachable', `QMP '${command}' on ${socketPath} got no answer in ${timeoutMs} ms`),
        ),
      timeoutMs,
    );
    const send = (execute: string, arguments_?: Record<string, unknown>) =>
      socket.write(`${JSON.stringify(arguments_ ? { execute, arguments: arguments_ } : { execute })}\n`);
    socket.setEncoding('utf8');
    socket.on('error', (error) =>
      fail(new HavenError('unreachable', `QMP socket ${socketPath}: ${error.message}`, { socketPath })),
    );
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      let newline = buffered.indexOf('\n');
      while (newline >= 0) {
        const message = JSON.parse(buffered.slice(0, newline)) as Record<string, unknown>;
        buffered = buffered.slice(newline + 1);
        newline = buffered.indexOf('\n');
        if ('event' in message) continue;
        if (stage === 'greeting') {
          stage = 'capabilities';
          send('qmp_capabilities');
        } else if ('error' in message) {
          const error = message.error as { class?: string; desc?: string };
          fail(
            new HavenError('conflict', `QMP '${command}' failed: ${error.desc ?? error.class}`, {
              command,
              error,
            }),
          );
          return;
        } else if (stage === 'capabilities') {
          stage = 'command';
          send(command, args);
        } else {
          clearTimeout(timer);
          socket.end();
          resolve(message.return);
          return;
        }
      }
    });
  });
}
