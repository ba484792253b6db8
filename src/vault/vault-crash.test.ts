import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { isTerminalJobState } from '../domain/job-states.ts';
import type { Job } from '../domain/model.ts';
import { spawnTs } from '../testing/child-process.ts';
import { until as waitUntil } from '../testing/until.ts';

const FIXTURE = 'src/testing/fixtures/vault-with-slow-job.ts';
const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function getJob(url: string, token: string, id: string): Promise<Job> {
  const response = await fetch(`${url}/api/v1/jobs/${id}`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(response.status, 200);
  return (await response.json()) as Job;
}

const until = <T>(what: string, probe: () => Promise<T | false>) =>
  waitUntil(what, probe, { timeoutMs: 20_000, intervalMs: 50 });

/** Starts a vault with a 3-step job, SIGKILLs it while step two runs, starts it again; returns the job then. */
async function killDuringStepTwo(env: Record<string, string>): Promise<{ job: Job; log: string[] }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'haven-crash-'));
  dirs.push(dataDir);
  const first = spawnTs(FIXTURE, [dataDir, '--submit'], env);
  const { url, jobId } = await first.firstJson<{ url: string; jobId: string }>();
  const token = (await readFile(join(dataDir, 'admin.token'), 'utf8')).trim();
  await until('step two to run', async () => (await getJob(url, token, jobId)).steps[1]!.state === 'running');
  first.process.kill('SIGKILL');
  await first.exited;

  await writeFile(join(dataDir, 'release'), '');
  const second = spawnTs(FIXTURE, [dataDir], env);
  try {
    const again = await second.firstJson<{ url: string }>();
    const job = await until('the job to end', async () => {
      const j = await getJob(again.url, token, jobId);
      return isTerminalJobState(j.state) ? j : false;
    });
    const log = (await readFile(join(dataDir, 'steps.log'), 'utf8')).trim().split('\n');
    return { job, log };
  } finally {
    second.process.kill('SIGTERM');
    await second.exited;
  }
}

describe('vault killed with SIGKILL during a multi-step job', () => {
  it('resumes the job at its interrupted step when that step is safe to repeat', async () => {
    const { job, log } = await killDuringStepTwo({});
    assert.equal(job.state, 'succeeded');
    assert.deepEqual(log, ['one', 'two', 'two (resumed)', 'three'], 'step one is not repeated; step two is');
    assert.deepEqual(
      job.steps.map((s) => s.state),
      ['succeeded', 'succeeded', 'succeeded'],
    );
    assert.equal(job.progress, 100);
  });

  it('fails the job with a clear reason when the interrupted step is not safe to repeat', async () => {
    const { job, log } = await killDuringStepTwo({ HAVEN_TEST_STEP_TWO_RETRY_SAFE: '0' });
    assert.equal(job.state, 'failed');
    assert.equal(job.error?.code, 'interrupted');
    assert.match(job.error!.message, /vault stopped while step 'Step two' was running/);
    assert.deepEqual(log, ['one', 'two']);
    assert.deepEqual(
      job.steps.map((s) => s.state),
      ['succeeded', 'failed', 'skipped'],
    );
  });
});
