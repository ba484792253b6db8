import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { NODE, REPO_ROOT, runHaven } from '../testing/child-process.ts';
import { COMMANDS } from './commands/index.ts';
import { didYouMean, editDistance } from './did-you-mean.ts';
import { fitLine } from './job-progress.ts';
import { commandHelp } from './main.ts';

describe('did you mean', () => {
  it('measures edits', () => {
    assert.equal(editDistance('lst', 'list'), 1);
    assert.equal(editDistance('failovr', 'failover'), 1);
    assert.equal(editDistance('', 'abc'), 3);
  });

  it('suggests a close candidate, nothing for a far one', () => {
    assert.equal(didYouMean('machines lst', ['machines list', 'machines show']), 'machines list');
    assert.equal(didYouMean('jsn', ['json', 'url']), 'json');
    assert.equal(didYouMean('frobnicate', ['failover', 'commit']), undefined);
  });
});

describe('help', () => {
  it('describes every option of every command and gives an example', () => {
    for (const command of COMMANDS) {
      for (const [name, option] of Object.entries(command.options ?? {})) {
        assert.ok(option.description.length > 8, `haven ${command.name} --${name} has no description`);
      }
      assert.ok(
        command.examples.every((e) => e.startsWith(`haven ${command.name}`)),
        `haven ${command.name}: examples run the command`,
      );
      const help = commandHelp(command);
      for (const name of Object.keys(command.options ?? {})) assert.match(help, new RegExp(`--${name}\\b`));
      assert.match(help, /^Examples?:$/m);
    }
  });

  it('answers --help of a command with its options described, on stdout, exit 0', async () => {
    const result = await runHaven(['machines', 'create', '--help']);
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^Usage: haven machines create NAME \[options\]$/m);
    assert.match(result.stdout, /--disk ID=SIZE\|ID=PATH:SIZE\s+a disk: .*\(repeatable\)/);
    assert.match(result.stdout, /--json\s+print JSON/);
    assert.match(result.stdout, /^ {2}haven machines create web-01 --host primary/m);
  });
});

describe('mistakes on the command line', () => {
  it('a mistyped command: one line with the closest command and a pointer to --help, exit 2', async () => {
    for (const [argv, guess] of [
      [['machines', 'lst'], 'machines list'],
      [['machine', 'list'], 'machines list'],
      [['failovr', 'web-01'], 'failover'],
      [['vault', 'bakup'], 'vault backup'],
    ] as const) {
      const result = await runHaven([...argv]);
      assert.equal(result.code, 2, argv.join(' '));
      assert.equal(result.stdout, '');
      assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
      assert.ok(result.stderr.includes(`did you mean '${guess}'?`), result.stderr);
      assert.match(result.stderr, /haven --help/);
    }
    const unknown = await runHaven(['frobnicate']);
    assert.equal(unknown.stderr, "haven: unknown command 'frobnicate'. See `haven --help`\n");
    const group = await runHaven(['machines']);
    assert.match(group.stderr, /^haven: 'machines' needs a subcommand: list, show, create/);
  });

  it('a mistyped flag: names it, suggests the closest, shows the usage line; not the parser’s message', async () => {
    const result = await runHaven(['machines', 'list', '--jsn']);
    assert.equal(result.code, 2);
    assert.equal(
      result.stderr,
      "haven machines list: unknown option '--jsn'; did you mean --json?\n" +
        'usage: haven machines list [options] (see haven machines list --help)\n',
    );
    const missing = await runHaven(['policies', 'create', 'gold', '--rpo']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--rpo needs a value \(--rpo DURATION: RPO threshold/);
    assert.doesNotMatch(missing.stderr, /ERR_PARSE_ARGS|To specify a positional/);
    const flagValue = await runHaven(['machines', 'list', '--json=yes']);
    assert.match(flagValue.stderr, /--json takes no value/);
  });
});

describe('a closed pipe (haven … | head -1)', () => {
  it('ends quietly with exit 0, no stack trace', async () => {
    const child = spawn(NODE, ['src/cli/main.ts', 'help'], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // The reader is gone before the CLI writes a byte: its first write meets EPIPE.
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const code = await new Promise((resolve) => child.on('exit', resolve));
    assert.equal(stderr, '');
    assert.equal(code, 0);
  });
});

describe('progress lines', () => {
  it('are cut to the terminal width, so a redraw does not wrap', () => {
    const line = `failover 3f9c2a1b  running  [${'#'.repeat(24)}]  50%  Start the machine at the recovery site`;
    assert.equal(fitLine(line, 40).length, 39);
    assert.ok(fitLine(line, 40).endsWith('…'));
    assert.equal(fitLine('short', 40), 'short');
    assert.equal(fitLine(line, undefined), line);
  });
});
