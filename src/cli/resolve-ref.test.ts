import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HavenError } from '../errors/index.ts';
import { pickByPrefix } from './resolve-ref.ts';

const items = [
  { id: '3f9c2a1b-0000-4000-8000-000000000001', name: 'web-01' },
  { id: '3f9c77aa-0000-4000-8000-000000000002', name: 'db-01' },
  { id: 'cafe0001-0000-4000-8000-000000000003', name: 'cafe' },
];

test('a unique id prefix names its object; a name or a full id is left as typed', () => {
  assert.equal(pickByPrefix(items, '3f9c2a1b', 'machine'), items[0]!.id);
  assert.equal(pickByPrefix(items, '3F9C7', 'machine'), items[1]!.id);
  // A name that looks like hex is the name, not a prefix.
  assert.equal(pickByPrefix(items, 'cafe', 'machine'), 'cafe');
  assert.equal(pickByPrefix(items, items[2]!.id, 'machine'), items[2]!.id);
  // Nothing starts with it: the vault answers (not found) in its own words.
  assert.equal(pickByPrefix(items, 'beef', 'machine'), 'beef');
});

test('an ambiguous prefix is refused, naming the candidates', () => {
  assert.throws(
    () => pickByPrefix(items, '3f9c', 'machine'),
    (e: unknown) =>
      e instanceof HavenError &&
      e.code === 'bad_request' &&
      e.message.includes("machine '3f9c' is ambiguous") &&
      e.message.includes('(web-01)') &&
      e.message.includes('(db-01)'),
  );
});
