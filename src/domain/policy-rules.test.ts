import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HavenError } from '../errors/index.ts';
import {
  AUTOMATIC_FAILBACK_POLICY,
  assertEditable,
  assertValidPolicy,
  DEFAULT_POLICY,
  type PolicyInput,
  validatePolicy,
} from './policy-rules.ts';

const base: PolicyInput = {
  name: 'gold',
  rpoThresholdSeconds: 300,
  retentionSeconds: 7200,
  appConsistentFrequencySeconds: 3600,
};
function codes(over: Partial<PolicyInput>): string[] {
  return validatePolicy({ ...base, ...over }).map((p) => `${p.field}:${p.code}`);
}

describe('policy rules', () => {
  it('has the seed values for the built-in automatic failback policy', () => {
    assert.deepEqual(
      { ...AUTOMATIC_FAILBACK_POLICY },
      {
        id: 'automatic-failback',
        name: 'automatic-failback',
        rpoThresholdSeconds: 15 * 60,
        retentionSeconds: 24 * 60 * 60,
        appConsistentFrequencySeconds: 60 * 60,
        builtIn: true,
      },
    );
    assert.equal(DEFAULT_POLICY.rpoThresholdSeconds, 900);
    assert.equal(DEFAULT_POLICY.retentionSeconds, 86400);
    assert.equal(DEFAULT_POLICY.appConsistentFrequencySeconds, 4 * 3600);
    assert.equal(DEFAULT_POLICY.builtIn, false);
    assert.ok(Object.isFrozen(AUTOMATIC_FAILBACK_POLICY));
    assert.deepEqual(validatePolicy(AUTOMATIC_FAILBACK_POLICY), []);
    assert.deepEqual(validatePolicy(DEFAULT_POLICY), []);
  });

  it('checks each field', () => {
    const cases: [Partial<PolicyInput>, string[]][] = [
      [{}, []],
      [{ appConsistentFrequencySeconds: 0 }, []],
      [{ appConsistentFrequencySeconds: 300 }, []],
      [{ appConsistentFrequencySeconds: 7200 }, []],
      [{ rpoThresholdSeconds: 7200 }, []],
      [{ retentionSeconds: 15 * 86400, appConsistentFrequencySeconds: 15 * 86400 }, []],
      [{ name: '  ' }, ['name:required']],
      [{ name: 'x'.repeat(101) }, ['name:too_long']],
      [{ rpoThresholdSeconds: 0 }, ['rpoThresholdSeconds:out_of_range']],
      [{ rpoThresholdSeconds: -60 }, ['rpoThresholdSeconds:out_of_range']],
      [{ rpoThresholdSeconds: 1.5 }, ['rpoThresholdSeconds:not_integer']],
      [{ rpoThresholdSeconds: Number.NaN }, ['rpoThresholdSeconds:not_integer']],
      [{ rpoThresholdSeconds: 7201 }, ['retentionSeconds:out_of_range']],
      [{ retentionSeconds: 0 }, ['retentionSeconds:out_of_range']],
      [{ retentionSeconds: 15 * 86400 + 1 }, ['retentionSeconds:out_of_range']],
      [{ appConsistentFrequencySeconds: 299 }, ['appConsistentFrequencySeconds:out_of_range']],
      [{ appConsistentFrequencySeconds: 7201 }, ['appConsistentFrequencySeconds:out_of_range']],
      [{ appConsistentFrequencySeconds: -1 }, ['appConsistentFrequencySeconds:out_of_range']],
      [{ appConsistentFrequencySeconds: 600.5 }, ['appConsistentFrequencySeconds:not_integer']],
      [
        { name: '', rpoThresholdSeconds: 0, retentionSeconds: -1, appConsistentFrequencySeconds: 1 },
        [
          'name:required',
          'rpoThresholdSeconds:out_of_range',
          'retentionSeconds:out_of_range',
          'appConsistentFrequencySeconds:out_of_range',
        ],
      ],
    ];
    for (const [over, want] of cases) assert.deepEqual(codes(over), want, JSON.stringify(over));
  });

  it('explains retention shorter than the RPO threshold', () => {
    const [problem] = validatePolicy({ ...base, rpoThresholdSeconds: 9000 });
    assert.equal(
      problem!.message,
      'Retention (7200 s) is shorter than the RPO threshold (9000 s): points would expire before the alert',
    );
  });

  it('throws one validation error with every problem', () => {
    assertValidPolicy(base);
    assert.throws(
      () => assertValidPolicy({ ...base, name: '', rpoThresholdSeconds: -1 }),
      (error: unknown) =>
        error instanceof HavenError &&
        error.code === 'validation_failed' &&
        (error.details.problems as unknown[]).length === 2 &&
        /^Policy '' is not valid: name: /.test(error.message),
    );
  });

  it('refuses to edit or delete built-in policies', () => {
    assertEditable({ id: 'p-1', name: 'gold', builtIn: false });
    for (const action of ['edit', 'delete'] as const) {
      assert.throws(
        () => assertEditable(AUTOMATIC_FAILBACK_POLICY, action),
        (error: unknown) =>
          error instanceof HavenError &&
          error.code === 'conflict' &&
          error.status === 409 &&
          error.message.includes("Policy 'automatic-failback' is built in") &&
          error.details.action === action &&
          error.details.policyId === 'automatic-failback',
      );
    }
  });
});
