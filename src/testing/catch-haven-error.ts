import assert from 'node:assert/strict';
import { HavenError } from '../errors/index.ts';

/** Runs `fn`, which must throw a HavenError, and returns that error for the test to inspect. */
export function catchHavenError(fn: () => unknown): HavenError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof HavenError, `expected a HavenError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected an error');
}
