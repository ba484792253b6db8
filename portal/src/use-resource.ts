import { useCallback, useEffect, useRef, useState } from 'react';
import { type ApiError, asApiError } from './api-client.ts';
import { useSession } from './session.tsx';

export interface Resource<T> {
  data: T | undefined;
  error: ApiError | undefined;
  loading: boolean;
  reload(): void;
}

/**
 * GETs an API path and keeps the answer; `refreshMs` polls (lists that should
 * stay live without SSE). A null path fetches nothing.
 */
export function useResource<T>(path: string | null, options: { refreshMs?: number } = {}): Resource<T> {
  const { api } = useSession();
  const [data, setData] = useState<T>();
  const [error, setError] = useState<ApiError>();
  const [loading, setLoading] = useState(path !== null);
  const [generation, setGeneration] = useState(0);
  const reload = useCallback(() => setGeneration((g) => g + 1), []);
  const lastPath = useRef(path);

  // biome-ignore lint/correctness/useExhaustiveDependencies: `generation` is the reload trigger
  useEffect(() => {
    if (lastPath.current !== path) {
      lastPath.current = path;
      setData(undefined);
    }
    if (path === null) return;
    const abort = new AbortController();
    setLoading(true);
    api
      .get<T>(path, abort.signal)
      .then((value) => {
        setData(value);
        setError(undefined);
      })
      .catch((e: unknown) => {
        if (abort.signal.aborted) return;
        setError(asApiError(e));
      })
      .finally(() => {
        if (!abort.signal.aborted) setLoading(false);
      });
    return () => abort.abort();
  }, [api, path, generation]);

  useEffect(() => {
    if (!options.refreshMs || path === null) return;
    const timer = setInterval(reload, options.refreshMs);
    return () => clearInterval(timer);
  }, [options.refreshMs, path, reload]);

  return { data, error, loading, reload };
}
