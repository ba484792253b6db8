import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type GroupMember, MAX_GROUP_MEMBERS, validateConsistencyGroup } from './consistency-group.ts';

const member = (id: string, over: Partial<GroupMember> = {}): GroupMember => ({
  id,
  name: `vm-${id}`,
  recoveryHostId: 'h-recovery',
  osFamily: 'linux',
  groupId: null,
  ...over,
});

const refused = (code: string, pattern: RegExp) => (e: Error & { code?: string }) =>
  e.code === code && pattern.test(e.message);

test('a group of machines with one recovery host and OS family is accepted', () => {
  validateConsistencyGroup('shop', [member('1'), member('2', { groupId: 'shop' })]);
  validateConsistencyGroup(
    'big',
    Array.from({ length: MAX_GROUP_MEMBERS }, (_, i) => member(`${i}`)),
  );
});

test('members on different recovery hosts or OS families are refused, naming them', () => {
  assert.throws(
    () => validateConsistencyGroup('shop', [member('1'), member('2', { recoveryHostId: 'h-other' })]),
    refused(
      'conflict',
      /share a recovery host: 'vm-1' replicates to host 'h-recovery', 'vm-2' to host 'h-other'/,
    ),
  );
  assert.throws(
    () => validateConsistencyGroup('shop', [member('1'), member('2', { osFamily: 'windows' })]),
    refused('conflict', /share an OS family: 'vm-1' is linux, 'vm-2' is windows/),
  );
});

test('too many, none, duplicates, other groups, unprotected machines and bad names are refused', () => {
  assert.throws(
    () =>
      validateConsistencyGroup(
        'big',
        Array.from({ length: 17 }, (_, i) => member(`${i}`)),
      ),
    refused('limit_exceeded', /would hold 17 machines; a consistency group holds at most 16/),
  );
  assert.throws(() => validateConsistencyGroup('none', []), refused('validation_failed', /at least one/));
  assert.throws(
    () => validateConsistencyGroup('dup', [member('1'), member('1')]),
    refused('validation_failed', /'vm-1' is listed twice/),
  );
  assert.throws(
    () => validateConsistencyGroup('shop', [member('1', { groupId: 'crm' })]),
    refused('conflict', /belongs to group 'crm'/),
  );
  assert.throws(
    () => validateConsistencyGroup('shop', [member('1', { recoveryHostId: null })]),
    refused('operation_not_allowed', /'vm-1' is not protected/),
  );
  assert.throws(
    () => validateConsistencyGroup('no spaces', [member('1')]),
    refused('validation_failed', /group name/),
  );
});
