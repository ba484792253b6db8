import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Embedded, startEmbedded } from '../app/start-embedded.ts';
import { runHaven } from '../testing/child-process.ts';

/** The `haven …` commands of docs/tutorial.md's shell blocks, in order. */
async function tutorialCommands(): Promise<string[][]> {
  const text = await readFile(new URL('../../docs/tutorial.md', import.meta.url), 'utf8');
  const commands: string[][] = [];
  for (const block of text.matchAll(/```sh\n([\s\S]*?)```/g)) {
    for (const line of block[1]!.split('\n')) {
      const command = line.trim();
      if (!command.startsWith('haven ')) continue;
      // Shell words: plain words and "double-quoted strings".
      commands.push(
        [...command.slice('haven '.length).matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!),
      );
    }
  }
  return commands;
}

let dir: string;
let up: Embedded;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-tutorial-'));
  // `npm start` is `haven up`; the test runs the same thing in process, on a free port.
  up = await startEmbedded({ dataDir: dir, port: 0, senderPollMs: 25 });
});

after(async () => {
  await up?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('docs/tutorial.md', () => {
  it('runs every haven command of the tutorial, in order, successfully', async () => {
    const commands = await tutorialCommands();
    assert.ok(commands.length >= 10, `found ${commands.length} commands`);
    for (const args of commands) {
      const result = await runHaven([...args, '--data', dir]);
      assert.equal(result.code, 0, `haven ${args.join(' ')}\n${result.stdout}\n${result.stderr}`);
    }
    const shown = JSON.parse(
      (await runHaven(['machines', 'show', 'demo-01', '--json', '--data', dir])).stdout,
    );
    assert.equal(shown.state, 'protected', 'the tutorial ends with demo-01 protected again');
    const again = await runHaven(['commit', 'demo-01', '--data', dir]);
    assert.equal(again.code, 1, 'committing a protected machine is refused');
    assert.match(again.stderr, /is protected: commit is not allowed there; allowed: /);
  });
});
