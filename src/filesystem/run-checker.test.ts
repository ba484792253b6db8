import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { HavenError } from '../errors/index.ts';
import { until } from '../testing/until.ts';
import { CHECKER_OUTPUT_HEAD_BYTES, CHECKER_OUTPUT_TAIL_BYTES, runChecker } from './run-checker.ts';

/** Whether the process runs (gone or a zombie: it does not). */
async function alive(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  return stat !== null && !/^\d+ \(.*\) Z /.test(stat);
}

test('the exit code is the verdict, with the output kept', async () => {
  const run = await runChecker('sh', ['-c', 'echo out; echo err >&2; exit 4'], { debianPackage: 'dash' });
  assert.deepEqual(run, { exitCode: 4, output: 'out\nerr\n', outputTruncated: false, aborted: false });
});

test('a long output keeps its start and its end', async () => {
  const run = await runChecker('sh', ['-c', `head -c 200000 /dev/zero | tr '\\0' x`], {
    debianPackage: 'dash',
  });
  assert.equal(run.outputTruncated, true);
  assert.ok(run.output.length < CHECKER_OUTPUT_HEAD_BYTES + CHECKER_OUTPUT_TAIL_BYTES + 100);
  assert.match(run.output, /bytes of output cut/);
});

test('an abort kills the tool and what it started, and says so', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'haven-run-checker-'));
  try {
    const pidFile = join(dir, 'pid');
    const started = Date.now();
    const run = await runChecker('sh', ['-c', `sleep 30 & echo $! > ${pidFile}; sleep 30`], {
      debianPackage: 'dash',
      signal: AbortSignal.timeout(300),
    });
    assert.equal(run.aborted, true);
    assert.equal(run.exitCode, null);
    assert.ok(Date.now() - started < 10_000);
    const background = Number(await readFile(pidFile, 'utf8'));
    await until('the background sleep to end', async () => !(await alive(background)), { timeoutMs: 5000 });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a missing tool is not_available, naming its package', async () => {
  await assert.rejects(
    runChecker('haven-no-such-checker', [], { debianPackage: 'haven-checkers' }),
    (e: unknown) =>
      e instanceof HavenError && e.code === 'not_available' && e.details.install === 'haven-checkers',
  );
});
