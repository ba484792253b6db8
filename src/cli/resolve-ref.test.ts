import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HavenError } from '../errors/index.ts';
import { pickByPrefix, pickId, pickPoint, pointLabel } from './resolve-ref.ts';

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

const machineId = '5d2b9e40-0000-4000-8000-000000000001';
const points = [
  { id: `${machineId}/disk0@7`, machineId },
  { id: `${machineId}/disk0@12`, machineId },
  { id: `${machineId}/disk0@130`, machineId },
  { id: `${machineId}@app-1733400000`, machineId },
];

test('a point is printed without the machine id all its points start with', () => {
  assert.deepEqual(points.map(pointLabel), ['disk0@7', 'disk0@12', 'disk0@130', '@app-1733400000']);
});

test('--point takes a point as printed, its full id, or the start of one that is unique', () => {
  assert.equal(pickPoint(points, 'disk0@7'), points[0]!.id);
  // Exact beats prefix: disk0@12 is also the start of nothing else, disk0@1 of two.
  assert.equal(pickPoint(points, 'disk0@12'), points[1]!.id);
  assert.equal(pickPoint(points, 'disk0@13'), points[2]!.id);
  assert.equal(pickPoint(points, '@app'), points[3]!.id);
  assert.equal(pickPoint(points, points[2]!.id), points[2]!.id);
  assert.equal(pickPoint(points, `${machineId}/disk0@13`), points[2]!.id);
  // No point starts with it: left for the vault to refuse in its own words.
  assert.equal(pickPoint(points, 'disk1@7'), 'disk1@7');
});

test('an ambiguous point prefix is refused, naming the candidates as printed', () => {
  assert.throws(
    () => pickPoint(points, 'disk0@1'),
    (e: unknown) =>
      e instanceof HavenError &&
      e.code === 'bad_request' &&
      e.message.includes("recovery point 'disk0@1' is ambiguous") &&
      e.message.includes('disk0@12, disk0@130'),
  );
});

test('a list filter gets the full id of the object named by name, id or short id; an unknown one is refused', () => {
  assert.equal(pickId(items, 'db-01', 'host'), items[1]!.id);
  assert.equal(pickId(items, items[1]!.id, 'host'), items[1]!.id);
  assert.equal(pickId(items, '3f9c2a', 'host'), items[0]!.id);
  assert.equal(pickId(items, 'cafe', 'host'), items[2]!.id);
  assert.throws(() => pickId(items, '3f9c', 'host'), /host '3f9c' is ambiguous/);
  assert.throws(
    () => pickId(items, 'nowhere', 'host'),
    (e: unknown) =>
      e instanceof HavenError &&
      e.code === 'not_found' &&
      e.message === "host 'nowhere' does not exist (there are web-01, db-01, cafe)",
  );
});
