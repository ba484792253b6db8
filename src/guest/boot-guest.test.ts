import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bootGuest } from './boot-guest.ts';

describe('bootGuest', () => {
  it('rejects a wait when QEMU exits before the line, with its error in the message', async () => {
    const guest = bootGuest({ kernel: '/nonexistent/vmlinuz', initramfs: '/nonexistent/initramfs.gz' });
    await assert.rejects(guest.waitForLine(/haven-guest booted/, 30_000), (error: Error) => {
      assert.match(error.message, /QEMU exited before a console line matched/);
      assert.match(error.message, /nonexistent\/vmlinuz/);
      return true;
    });
    const exit = await guest.exited;
    assert.equal(exit.code, 1);
    assert.equal(guest.exitCode, 1);
  });
});
