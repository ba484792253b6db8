import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jobOutputLines } from './job-output-lines.ts';
import { localTime } from './machine-summary.ts';

describe('jobOutputLines', () => {
  it('puts a step output in words: the point by time and kind, units, nested facts and console lines indented', () => {
    const time = '2026-03-02T09:29:54.000Z';
    const lines = jobOutputLines({
      recoveryPoint: { id: 'vm-1@412', time, type: 'crash-consistent', option: 'latest' },
      machineUp: { at: time, seconds: 4.2 },
      sentBytes: 3 * 1024 * 1024,
      drillConsoleTail: ['boot: ok', 'login:'],
      committed: false,
      notes: '',
    });
    assert.deepEqual(lines, [
      `  Recovery point: ${localTime(time)} · crash-consistent (latest)`,
      '  Machine up:',
      `    At: ${localTime(time)}`,
      '    Seconds: 4 s',
      '  Sent bytes: 3.0 MiB',
      '  Drill console tail:',
      '    boot: ok',
      '    login:',
      '  Committed: no',
      '  Notes: -',
    ]);
  });

  it('lists records (one per disk) numbered, their fields below, never [object Object]', () => {
    const lines = jobOutputLines({ disks: [{ diskId: 'disk0', ranges: 3 }, 'plain'] });
    assert.deepEqual(lines, [
      '  Disks:',
      '    1.',
      '      Disk id: disk0',
      '      Ranges: 3',
      '    2. plain',
    ]);
  });
});
