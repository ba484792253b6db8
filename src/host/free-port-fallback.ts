/**
 * Listens on `port`; when it is taken and any port will do (a default, not
 * the operator's choice), on a free one instead, saying so with `taken`.
 */
export function orFreePort<T>(
  listen: (port: number) => Promise<T>,
  port: number,
  fallback: { allowed: boolean; taken: () => void },
): Promise<T> {
  return listen(port).catch((error: unknown) => {
    if (!fallback.allowed || (error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error;
    fallback.taken();
    return listen(0);
  });
}
