import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { OperationWithOptions } from '../lifecycle/operation-options.ts';
import { directionOf, type PlanJobInput, type PlanOperation, planSteps } from './plan-steps.ts';

const input = (requested: OperationWithOptions<PlanOperation>): PlanJobInput => ({
  ...requested,
  planId: 'p',
  planName: 'app',
  machineNames: { a: 'db', b: 'web' },
  groups: [
    {
      name: 'database',
      machineIds: ['a'],
      before: [],
      after: [{ kind: 'manual', name: 'check', text: 'x', timeoutSeconds: null }],
    },
    {
      name: 'web',
      machineIds: ['b'],
      before: [{ kind: 'script', name: 'dns', script: 'dns', timeoutSeconds: 5 }],
      after: [],
    },
  ],
});

describe('plan steps', () => {
  it('run actions around operations that start machines, in the order written', () => {
    const names = ['g1.machine.a', 'g1.after.1', 'g2.before.1', 'g2.machine.b'];
    assert.deepEqual(
      planSteps(
        input({
          operation: 'failover',
          options: { recoveryPoint: { option: 'latest' }, shutdownSource: true },
        }),
      ).map((s) => s.name),
      names,
    );
    assert.deepEqual(
      planSteps(input({ operation: 'failback', options: { dataSync: 'full-download' } })).map((s) => s.name),
      names,
    );
    assert.deepEqual(
      planSteps(input({ operation: 'complete-failover', options: {} })).map((s) => s.name),
      names,
    );
  });

  it('leave actions out where no machine starts: commit, and a failback that only synchronises', () => {
    const names = ['g1.machine.a', 'g2.machine.b'];
    assert.deepEqual(
      planSteps(input({ operation: 'commit', options: {} })).map((s) => s.name),
      names,
    );
    assert.deepEqual(
      planSteps(input({ operation: 'failback', options: { dataSync: 'before-failover' } })).map(
        (s) => s.name,
      ),
      names,
    );
  });

  it('tell scripts the direction', () => {
    assert.equal(directionOf('failover'), 'primary-to-recovery');
    assert.equal(directionOf('failback'), 'recovery-to-primary');
    assert.equal(directionOf('complete-failover'), 'recovery-to-primary');
  });
});
