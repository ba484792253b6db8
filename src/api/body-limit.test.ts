import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { type Child, spawnTs } from '../testing/child-process.ts';

let dir: string;
let vault: Child;
let url: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-body-limit-'));
  vault = spawnTs('src/cli/main.ts', ['vault', '--data', dir, '--port', '0', '--control-port', '0']);
  ({ url } = await vault.firstJson<{ url: string }>());
});

after(async () => {
  vault.process.kill('SIGTERM');
  await vault.exited;
  await rm(dir, { recursive: true, force: true });
});

function rssBytes(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb) * 1024;
}

/** Streams `total` bytes of a JSON-looking body; resolves with the answer (and how much was sent by then). */
function send(
  path: string,
  total: number,
  options: { chunked: boolean; bearer?: string },
): Promise<{ status: number; body: string; sentBytes: number }> {
  return new Promise((resolve, reject) => {
    const chunk = Buffer.alloc(1 << 20, 0x20);
    let sent = 0;
    const req = request(`${url}${path}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(options.bearer ? { authorization: `Bearer ${options.bearer}` } : {}),
        ...(options.chunked ? {} : { 'content-length': String(total) }),
      },
    });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d) => {
        body += d;
      });
      res.on('end', () => {
        req.destroy();
        resolve({ status: res.statusCode!, body, sentBytes: sent });
      });
    });
    // The vault closes the connection after a 413: the rest of the upload fails, which is the point.
    req.on('error', (error) => {
      if (!['EPIPE', 'ECONNRESET'].includes((error as NodeJS.ErrnoException).code ?? '')) reject(error);
    });
    const pump = () => {
      while (sent < total) {
        sent += chunk.length;
        if (!req.write(chunk)) {
          req.once('drain', pump);
          return;
        }
      }
      req.end();
    };
    pump();
  });
}

it('refuses a 300 MB body before authentication with 413, without buffering it (vault RSS stays bounded)', async () => {
  const pid = vault.process.pid!;
  const before = rssBytes(pid);
  for (const chunked of [true, false]) {
    const answers = await Promise.all(
      Array.from({ length: 3 }, () => send('/api/v1/hosts/enrol', 300 << 20, { chunked, bearer: 'x.y' })),
    );
    for (const answer of answers) {
      assert.equal(answer.status, 413, answer.body);
      const error = JSON.parse(answer.body).error;
      assert.equal(error.code, 'payload_too_large');
      assert.equal(error.details.field, 'body');
      assert.match(error.message, /larger than 1048576 bytes/);
      assert.ok(
        answer.sentBytes < 300 << 20,
        `the vault read all ${answer.sentBytes} bytes before answering`,
      );
    }
    // No bearer at all: still 413 (the size is checked before who is asking).
    assert.equal((await send('/api/v1/machines', 300 << 20, { chunked })).status, 413);
  }
  const grown = rssBytes(pid) - before;
  assert.ok(grown < 64 << 20, `vault RSS grew by ${grown >> 20} MiB`);
  // The vault still answers.
  const health = await fetch(`${url}/api/v1/health`);
  assert.equal(health.status, 200);
});

it('accepts a body under the limit (the limit does not break ordinary requests)', async () => {
  const answer = await send('/api/v1/hosts/enrol', 1000, { chunked: true, bearer: 'x.y' });
  // 1000 spaces are not JSON: a 400 naming the body, not a 413.
  assert.equal(answer.status, 400, answer.body);
});
