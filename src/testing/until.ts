/**
 * Polls `probe` until it returns something truthy, for tests that wait on a
 * real system (a job, a guest's console, a host reconnecting).
 */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined | false | null>,
  options: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const end = Date.now() + (options.timeoutMs ?? 60_000);
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 100));
  }
}
