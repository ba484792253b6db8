import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HavenError } from '../errors/index.ts';
import type { RecoveryPlanGroup } from './model.ts';
import { estimateRto } from './recovery-plan-rto.ts';
import {
  assertValidPlan,
  MAX_PLAN_MACHINES,
  type PlanDocument,
  planScriptProblems,
  planToDocument,
  validatePlan,
} from './recovery-plan-validation.ts';

const machines = Array.from({ length: 120 }, (_, i) => ({ id: `id-${i}`, name: `vm-${i}` }));
const scripts = { names: new Set(['dns.sh', 'warm', 'true']), dir: '/var/lib/haven/scripts' };
const context = { machines, scripts };

function plan(groups: PlanDocument['groups']): PlanDocument {
  return { name: 'app', description: 'the app', groups };
}

function codes(doc: PlanDocument, busy: { machineId: string; planName: string; jobId: string }[] = []) {
  return validatePlan(doc, { machines, scripts, busy }).problems.map((p) => `${p.field}:${p.code}`);
}

describe('recovery plan validation', () => {
  it('resolves machines by name or id, keeps group and action order exactly as written', () => {
    const before = [
      { kind: 'script' as const, name: 'z-last-alphabetically', script: 'dns.sh', timeoutSeconds: 5 },
      { kind: 'manual' as const, name: 'a-first-alphabetically', text: 'Check the DNS' },
      { kind: 'script' as const, name: 'm', script: 'warm' },
    ];
    const { problems, plan: out } = validatePlan(
      plan([
        { name: 'db', machines: ['vm-2', 'id-0'], before },
        { name: 'app', machines: ['vm-1'], after: [{ kind: 'script', name: 'warm', script: 'warm' }] },
      ]),
      context,
    );
    assert.deepEqual(problems, []);
    assert.deepEqual(
      out.groups.map((g) => [g.name, g.machineIds]),
      [
        ['db', ['id-2', 'id-0']],
        ['app', ['id-1']],
      ],
    );
    assert.deepEqual(
      out.groups[0]!.before.map((a) => [a.name, a.timeoutSeconds]),
      [
        ['z-last-alphabetically', 5],
        ['a-first-alphabetically', null],
        ['m', null],
      ],
    );
    const doc = planToDocument({ ...out }, (id) => machines.find((m) => m.id === id)!.name);
    assert.deepEqual(doc.groups[0]!.machines, ['vm-2', 'vm-0']);
    assert.deepEqual(
      doc.groups[0]!.before!.map((a) => a.name),
      before.map((a) => a.name),
    );
    // The exported document validates to the same plan (round trip).
    assert.deepEqual(validatePlan(doc, context).plan, out);
  });

  it('refuses a machine in two groups (a cycle) and twice in one group, naming it', () => {
    const { problems } = validatePlan(
      plan([
        { name: 'db', machines: ['vm-1', 'vm-2', 'vm-2'] },
        { name: 'app', machines: ['id-1'] },
      ]),
      context,
    );
    assert.deepEqual(
      problems.map((p) => p.field),
      ['groups[0].machines[2]', 'groups[1].machines[0]'],
    );
    assert.match(problems[0]!.message, /Group 'db' lists machine 'vm-2' twice/);
    assert.match(problems[1]!.message, /Machine 'vm-1' is in group 'db' and in group 'app'.*cycle/);
  });

  it('refuses unknown machines, naming each', () => {
    const { problems } = validatePlan(plan([{ name: 'db', machines: ['nope', 'vm-1', 'gone'] }]), context);
    assert.deepEqual(
      problems.map((p) => [p.field, p.code]),
      [
        ['groups[0].machines[0]', 'unknown_machine'],
        ['groups[0].machines[2]', 'unknown_machine'],
      ],
    );
    assert.match(problems[1]!.message, /machine 'gone' does not exist/);
  });

  it('refuses machines that another plan is moving', () => {
    const busy = [{ machineId: 'id-3', planName: 'other', jobId: 'job-9' }];
    assert.deepEqual(codes(plan([{ name: 'g', machines: ['vm-3'] }]), busy), [
      'groups[0].machines[0]:machine_busy',
    ]);
    assert.throws(
      () => assertValidPlan(plan([{ name: 'g', machines: ['vm-3'] }]), { machines, scripts, busy }),
      (e: unknown) =>
        e instanceof HavenError && e.status === 409 && /job job-9 of plan 'other'/.test(e.message),
    );
  });

  it(`allows ${MAX_PLAN_MACHINES} machines and refuses ${MAX_PLAN_MACHINES + 1}`, () => {
    const names = machines.map((m) => m.name);
    const split = (n: number) => [
      { name: 'a', machines: names.slice(0, 50) },
      { name: 'b', machines: names.slice(50, n) },
    ];
    assert.deepEqual(codes(plan(split(MAX_PLAN_MACHINES))), []);
    assert.deepEqual(codes(plan(split(MAX_PLAN_MACHINES + 1))), ['groups:out_of_range']);
    assert.throws(
      () => assertValidPlan(plan(split(MAX_PLAN_MACHINES + 1)), context),
      /Plan 'app' is refused: The plan lists 101 machines; at most 100/,
    );
  });

  it('refuses bad names, groups and actions, reporting every problem at once', () => {
    const doc: PlanDocument = {
      name: ' ',
      description: 'x'.repeat(3000),
      groups: [
        {
          name: 'a',
          machines: ['vm-1'],
          before: [
            { kind: 'manual', name: 'wait', text: 'do it', timeoutSeconds: 10 },
            { kind: 'script', name: '', script: '  ' },
            { kind: 'script', name: 's', script: 'true', timeoutSeconds: 0 },
            { kind: 'script', name: 's', script: 'true', timeoutSeconds: 1.5 },
            { kind: 'shell' as 'script', name: 's', script: 'true' },
            { kind: 'script', name: 's', script: 'nope' },
            { kind: 'manual', name: 'm', text: '' },
          ],
          after: Array.from({ length: 21 }, (_, i) => ({
            kind: 'script' as const,
            name: `s${i}`,
            script: 'true',
          })),
        },
        { name: 'a', machines: [] },
      ],
    };
    assert.deepEqual(codes(doc), [
      'name:required',
      'description:too_long',
      'groups[0].before[0].timeoutSeconds:out_of_range',
      'groups[0].before[1].name:required',
      'groups[0].before[1].script:required',
      'groups[0].before[2].timeoutSeconds:out_of_range',
      'groups[0].before[3].timeoutSeconds:not_integer',
      'groups[0].before[4].kind:invalid_format',
      'groups[0].before[5].script:unknown_script',
      'groups[0].before[6].text:required',
      'groups[0].after:out_of_range',
      'groups[1].name:duplicate',
    ]);
  });

  it('refuses a script action with an inline command, saying how to register it', () => {
    const doc = plan([
      { name: 'web', machines: ['vm-1'], before: [{ kind: 'script', name: 'dns', text: 'cat /etc/shadow' }] },
    ]);
    assert.deepEqual(codes(doc), ['groups[0].before[0].text:inline_script']);
    assert.throws(
      () => assertValidPlan(doc, context),
      (error: HavenError) =>
        error.status === 400 &&
        error.details.field === 'groups[0].before[0].text' &&
        /cannot carry a command in 'text'.*scripts folder \(\/var\/lib\/haven\/scripts\).*'script: NAME'/.test(
          error.message,
        ),
    );
  });

  it('exports an inline command stored before scripts were registered, so that importing it is refused', () => {
    const stored: RecoveryPlanGroup[] = [
      {
        name: 'web',
        machineIds: ['id-1'],
        before: [{ kind: 'inline-script', name: 'dns', text: 'echo hi', timeoutSeconds: 5 }],
        after: [],
      },
    ];
    const doc = planToDocument({ name: 'app', description: '', groups: stored }, () => 'vm-1');
    assert.deepEqual(doc.groups[0]!.before, [
      { kind: 'script', name: 'dns', text: 'echo hi', timeoutSeconds: 5 },
    ]);
    assert.deepEqual(codes(doc), ['groups[0].before[0].text:inline_script']);
    assert.match(
      planScriptProblems(stored, scripts)[0]!,
      /action 'dns' before its machines holds an inline command/,
    );
  });

  it('refuses an empty plan and too many groups', () => {
    assert.deepEqual(codes(plan([])), ['groups:required']);
    assert.deepEqual(codes(plan([{ name: 'a', machines: [] }])), ['groups:required']);
    const many = Array.from({ length: 21 }, (_, i) => ({ name: `g${i}`, machines: [`vm-${i}`] }));
    assert.deepEqual(codes(plan(many)), ['groups:out_of_range']);
  });
});

describe('recovery plan RTO estimate', () => {
  const groups: RecoveryPlanGroup[] = [
    {
      name: 'db',
      machineIds: ['a', 'b'],
      before: [{ kind: 'script', name: 's', script: 'x', timeoutSeconds: null }],
      after: [{ kind: 'manual', name: 'm', text: 'x', timeoutSeconds: null }],
    },
    { name: 'app', machineIds: ['c'], before: [], after: [] },
  ];
  const stepName = (g: number, side: string, a: number) => `${g}.${side}.${a}`;

  it('sums groups, takes the slowest machine within a group, adds script actions', () => {
    const estimate = estimateRto(
      groups,
      {
        machineSeconds: new Map([
          ['a', 30],
          ['b', 45],
          ['c', 20],
        ]),
        actionSeconds: new Map([
          ['0.before.0', 2.5],
          ['0.after.0', 999],
        ]),
      },
      stepName,
    );
    assert.equal(estimate.seconds, 67.5);
    assert.deepEqual(estimate.groups, [
      { name: 'db', seconds: 47.5 },
      { name: 'app', seconds: 20 },
    ]);
    assert.deepEqual(estimate.machinesWithoutHistory, []);
  });

  it('is null without history and names machines left out', () => {
    assert.equal(
      estimateRto(groups, { machineSeconds: new Map(), actionSeconds: new Map() }, stepName).seconds,
      null,
    );
    const partial = estimateRto(
      groups,
      { machineSeconds: new Map([['b', 10]]), actionSeconds: new Map() },
      stepName,
    );
    assert.equal(partial.seconds, 10);
    assert.deepEqual(partial.machinesWithoutHistory, ['a', 'c']);
  });
});
