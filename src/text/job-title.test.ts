import assert from 'node:assert/strict';
import { test } from 'node:test';
import { jobTitle } from './job-title.ts';

test('a job in words, whatever its kind', () => {
  assert.equal(jobTitle({ kind: 'test-failover' }), 'Test failover');
  assert.equal(
    jobTitle({ kind: 'recovery-plan', input: { operation: 'failover', planName: 'billing' } }),
    'Failover of plan billing',
  );
  assert.equal(jobTitle({ kind: 'recovery-plan', input: {} }), 'Run of a plan');
  assert.equal(jobTitle({ kind: 'vault-backup' }), 'Vault backup');
  assert.equal(jobTitle({ kind: 'drill' }), 'Drill');
  assert.equal(jobTitle({ kind: 'some-new-kind' }), 'Some new kind');
});
