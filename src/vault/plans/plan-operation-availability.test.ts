import assert from 'node:assert/strict';
import { test } from 'node:test';
import { planOperationAvailability } from './plan-operation-availability.ts';

test('a plan operation is offered only when every member machine allows it, naming those that do not', () => {
  const availability = planOperationAvailability([
    { id: 'a', name: 'db-01', state: 'protected' },
    { id: 'b', name: 'web-01', state: 'unprotected' },
  ]);
  const failover = availability.find((a) => a.operation === 'failover')!;
  assert.equal(failover.allowed, false);
  assert.deepEqual(failover.blockedBy, [{ machineId: 'b', machineName: 'web-01', state: 'unprotected' }]);

  const allProtected = planOperationAvailability([
    { id: 'a', name: 'db-01', state: 'protected' },
    { id: 'b', name: 'web-01', state: 'protected' },
  ]);
  const offered = allProtected.filter((a) => a.allowed).map((a) => a.operation);
  assert.ok(offered.includes('failover') && offered.includes('test-failover'));
  assert.ok(!offered.includes('commit'));
});

test('a plan without machines offers nothing', () => {
  assert.ok(planOperationAvailability([]).every((a) => !a.allowed));
});
