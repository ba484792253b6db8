import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { catchHavenError } from '../testing/catch-haven-error.ts';
import {
  ALL_OPERATIONS,
  allowedOperations,
  type DataSync,
  failureState,
  IN_PROGRESS_STATES,
  isInProgress,
  LIFECYCLE,
  type LifecycleOperation,
  planTransition,
  STABLE_STATES,
  where,
} from './lifecycle.ts';
import type { MachineState } from './model.ts';

// The expected lifecycle, written out again from the brief (SPEC §2), on
// purpose in another shape than LIFECYCLE: "from operation [dataSync] -> via -> to [!]"
// where '!' marks a point of no return.
const EXPECTED = `
unprotected enable-replication -> enabling-replication -> protected
protected disable-replication -> disabling-replication -> unprotected
reverse-protected disable-replication -> disabling-replication -> unprotected
failover-committed disable-replication -> disabling-replication -> unprotected
failback-committed disable-replication -> disabling-replication -> unprotected
protected test-failover -> starting-test-failover -> test-failover-active
test-failover-active cleanup-test-failover -> cleaning-up-test-failover -> protected
protected failover -> failing-over -> failed-over !
reverse-protected failover -> failing-back -> failed-back !
protected planned-failover -> failing-over -> failed-over !
reverse-protected failback before-failover -> synchronizing-failback -> failback-ready
reverse-protected failback full-download -> failing-back -> failed-back !
failback-ready complete-failover -> completing-failover -> failed-back !
failed-over change-recovery-point -> changing-recovery-point -> failed-over
failed-back change-recovery-point -> changing-recovery-point -> failed-back
failed-over commit -> committing -> failover-committed
failed-back commit -> committing -> failback-committed
failover-committed reprotect -> reprotecting -> reverse-protected
failback-committed reprotect -> reprotecting -> protected
protected resync -> resynchronizing -> protected
reverse-protected resync -> resynchronizing -> reverse-protected
`;

interface Expected {
  via: string;
  to: string;
  ponr: boolean;
}
const expected = new Map<string, Expected>();
for (const line of EXPECTED.trim().split('\n')) {
  const [head, via, tail] = line.split(' -> ') as [string, string, string];
  const [from, op, sync] = head.split(' ');
  const [to, bang] = tail.split(' ');
  expected.set(`${from}|${op}|${sync ?? ''}`, { via, to: to!, ponr: bang === '!' });
}

const ALL_STATES: MachineState[] = [
  'unprotected',
  'protected',
  'test-failover-active',
  'failed-over',
  'failover-committed',
  'reverse-protected',
  'failback-ready',
  'failed-back',
  'failback-committed',
  'enabling-replication',
  'disabling-replication',
  'starting-test-failover',
  'cleaning-up-test-failover',
  'failing-over',
  'changing-recovery-point',
  'committing',
  'reprotecting',
  'synchronizing-failback',
  'completing-failover',
  'failing-back',
  'resynchronizing',
];
const STABLE = ALL_STATES.slice(0, 9);
const OPERATIONS: LifecycleOperation[] = [
  'enable-replication',
  'disable-replication',
  'test-failover',
  'cleanup-test-failover',
  'failover',
  'planned-failover',
  'failback',
  'complete-failover',
  'change-recovery-point',
  'commit',
  'reprotect',
  'resync',
];
const SYNC_OPTIONS: (DataSync | undefined)[] = [undefined, 'before-failover', 'full-download'];

function expectedAllowed(state: MachineState): string[] {
  const ops = new Set(
    [...expected.keys()].filter((k) => k.startsWith(`${state}|`)).map((k) => k.split('|')[1]),
  );
  return OPERATIONS.filter((op) => ops.has(op));
}

describe('lifecycle', () => {
  it('lists every state and operation exactly once', () => {
    assert.deepEqual([...STABLE_STATES].sort(), [...STABLE].sort());
    assert.deepEqual([...IN_PROGRESS_STATES].sort(), ALL_STATES.slice(9).sort());
    assert.deepEqual([...ALL_OPERATIONS], OPERATIONS);
  });

  it('answers every (state, operation, option) as expected', () => {
    let checked = 0;
    for (const state of ALL_STATES) {
      for (const operation of OPERATIONS) {
        for (const dataSync of SYNC_OPTIONS) {
          checked++;
          const machine = { id: 'm-1', name: 'web-01', state };
          const plan = () => planTransition(machine, operation, dataSync ? { dataSync } : undefined);
          const exact = expected.get(`${state}|${operation}|${dataSync ?? ''}`);
          const plain = expected.get(`${state}|${operation}|`);
          const variants = SYNC_OPTIONS.filter((s) => s && expected.has(`${state}|${operation}|${s}`));
          const want = plain ?? exact;
          const where = `${state} × ${operation} × ${dataSync ?? '-'}`;
          if (want) {
            const t = plan();
            assert.equal(t.operation, operation, where);
            assert.equal(t.from, state, where);
            assert.equal(t.via, want.via, where);
            assert.equal(t.to, want.to, where);
            assert.equal(t.pointOfNoReturn, want.ponr, where);
            assert.equal(failureState(t), state, where);
          } else if (variants.length > 0) {
            const error = catchHavenError(plan);
            assert.equal(error.code, 'bad_request', where);
            assert.match(error.message, /dataSync/);
            assert.match(error.message, /before-failover, full-download/);
          } else {
            const error = catchHavenError(plan);
            assert.equal(error.code, 'operation_not_allowed', where);
            assert.equal(error.status, 409);
            const allowed = expectedAllowed(state);
            assert.deepEqual(error.details, {
              machineId: 'm-1',
              machineName: 'web-01',
              state,
              operation,
              allowedOperations: allowed,
            });
            assert.ok(error.message.includes(`Machine 'web-01' is ${state}`), error.message);
            if (STABLE.includes(state)) {
              assert.ok(error.message.includes(`${operation} is not allowed`), error.message);
              assert.ok(error.message.includes(`allowed: ${allowed.join(', ') || 'none'}`), error.message);
            } else {
              assert.deepEqual(allowed, []);
              assert.match(error.message, /a job is running/);
            }
          }
        }
      }
    }
    assert.equal(checked, 21 * 12 * 3);
  });

  it('gives the allowed operations per state', () => {
    for (const state of ALL_STATES) assert.deepEqual(allowedOperations(state), expectedAllowed(state), state);
    assert.deepEqual(allowedOperations('failed-over'), ['change-recovery-point', 'commit']);
    assert.deepEqual(allowedOperations('unprotected'), ['enable-replication']);
  });

  it('names the machine, its state and the allowed operations when refusing', () => {
    const error = catchHavenError(() =>
      planTransition({ id: 'm-9', name: 'web-01', state: 'failed-over' }, 'reprotect'),
    );
    assert.equal(
      error.message,
      "Machine 'web-01' is failed-over: reprotect is not allowed there; allowed: change-recovery-point, commit",
    );
  });

  it('tells in-progress states apart', () => {
    for (const state of ALL_STATES) assert.equal(isInProgress(state), !STABLE.includes(state), state);
  });

  it('has no duplicate rows and one row per (operation, from, option)', () => {
    const keys = LIFECYCLE.map((t) => `${t.operation}|${t.from}|${t.when?.dataSync ?? ''}`);
    assert.equal(new Set(keys).size, keys.length);
    // A row without options and a row with options never coexist for one (operation, from).
    for (const t of LIFECYCLE) {
      const same = LIFECYCLE.filter((u) => u.operation === t.operation && u.from === t.from);
      if (same.length > 1)
        assert.ok(
          same.every((u) => u.when !== undefined),
          `${t.operation} from ${t.from}`,
        );
    }
    assert.equal(LIFECYCLE.length, expected.size);
  });

  it('reaches every stable state from unprotected', () => {
    const seen = new Set<string>(['unprotected']);
    const queue = ['unprotected'];
    while (queue.length > 0) {
      const state = queue.shift()!;
      for (const t of LIFECYCLE) {
        if (t.from === state && !seen.has(t.to)) {
          seen.add(t.to);
          queue.push(t.to);
        }
      }
    }
    assert.deepEqual([...seen].sort(), [...STABLE].sort());
  });

  it('uses every in-progress state as some via, and only those', () => {
    const vias = new Set(LIFECYCLE.map((t) => t.via));
    assert.deepEqual([...vias].sort(), ALL_STATES.slice(9).sort());
    for (const t of LIFECYCLE) {
      assert.ok(STABLE.includes(t.from) && STABLE.includes(t.to), `${t.operation}: ${t.from} -> ${t.to}`);
      assert.ok(t.description.length > 10);
    }
  });

  it('says where the workload runs', () => {
    const stable: Record<string, string> = {
      unprotected: 'primary',
      protected: 'primary',
      'test-failover-active': 'primary',
      'failed-over': 'recovery',
      'failover-committed': 'recovery',
      'reverse-protected': 'recovery',
      'failback-ready': 'recovery',
      'failed-back': 'primary',
      'failback-committed': 'primary',
    };
    for (const state of STABLE) assert.equal(where(state), stable[state], state);
    assert.equal(where('failing-over'), 'none');
    assert.equal(where('failing-back'), 'none');
    assert.equal(where('completing-failover'), 'none');
    assert.equal(where('synchronizing-failback'), 'recovery');
    assert.equal(where('enabling-replication'), 'primary');
    assert.equal(where('starting-test-failover'), 'primary');
    assert.equal(where('committing', 'failed-over'), 'recovery');
    assert.equal(where('committing', 'failed-back'), 'primary');
    assert.equal(where('reprotecting', 'failover-committed'), 'recovery');
    assert.equal(where('resynchronizing', 'protected'), 'primary');
    assert.equal(where('disabling-replication', 'reverse-protected'), 'recovery');
    assert.equal(catchHavenError(() => where('committing')).code, 'bad_request');
    assert.equal(catchHavenError(() => where('committing', 'protected')).code, 'bad_request');
  });
});
