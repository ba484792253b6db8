import { useEffect, useState } from 'react';
import { type ApiError, asApiError } from './api-client.ts';
import { useSession } from './session.tsx';

export interface ConsoleStream {
  /** The last `keep` lines, newest last. */
  lines: string[];
  /** The vault ended the stream: the console is gone (the drill ended). */
  ended: boolean;
  /** Why the stream broke; it is opened again after a pause. */
  error: ApiError | undefined;
}

const RETRY_MS = 2000;

/**
 * Follows a console over server-sent events (`?follow=1`): each new line
 * within about a second of the host writing it. Keeps only the last `keep`
 * lines; when the stream breaks (the vault restarted, a proxy timed out) it
 * is opened again and starts from the vault's tail, so no line is doubled.
 * A null path follows nothing; a new `generation` (a new drill) follows anew.
 */
export function useConsoleStream(path: string | null, keep: number, generation?: string): ConsoleStream {
  const { api } = useSession();
  const [state, setState] = useState<ConsoleStream>({
    lines: [],
    ended: false,
    error: undefined,
  });
  // biome-ignore lint/correctness/useExhaustiveDependencies: `generation` starts the stream over
  useEffect(() => {
    setState({ lines: [], ended: false, error: undefined });
    if (path === null) return;
    const abort = new AbortController();
    const follow = async () => {
      while (!abort.signal.aborted) {
        let fresh = true;
        try {
          await api.events(
            `${path}${path.includes('?') ? '&' : '?'}follow=1&tail=${keep}`,
            (event) => {
              if (event.name === 'line') {
                // The vault sends its tail again on each connection: it replaces what was shown.
                const replace = fresh;
                fresh = false;
                setState((s) => ({
                  ...s,
                  lines: [...(replace ? [] : s.lines), event.data].slice(-keep),
                  error: undefined,
                }));
              } else if (event.name === 'end') {
                setState((s) => ({ ...s, ended: true }));
              }
            },
            abort.signal,
          );
          setState((s) => ({ ...s, ended: true }));
          return;
        } catch (error) {
          if (abort.signal.aborted) return;
          const apiError = asApiError(error);
          setState((s) => ({ ...s, error: apiError }));
          // A console that is not there (404) or not ours to read (403) will not come back by retrying.
          if (apiError.status === 404 || apiError.status === 403 || apiError.status === 401) return;
        }
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      }
    };
    void follow();
    return () => abort.abort();
  }, [api, path, keep, generation]);
  return state;
}
