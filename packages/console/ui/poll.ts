import { useCallback, useEffect, useState } from 'preact/hooks';
import { errorText } from './api.ts';

export interface Polled<T> {
  data: T | undefined;
  error: string | undefined;
  reload: () => void;
}

/** `load()` now and every `everyMs` while the page is shown; `reload()` after a change. */
export function usePolled<T>(load: () => Promise<T>, everyMs: number, deps: unknown[] = []): Polled<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<string>();
  const [tick, setTick] = useState(0);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  useEffect(() => {
    let live = true;
    const run = () =>
      load().then(
        (d) => {
          if (!live) return;
          setData(d);
          setError(undefined);
        },
        (e: unknown) => live && setError(errorText(e)),
      );
    void run();
    const t = everyMs > 0 ? setInterval(run, everyMs) : undefined;
    return () => {
      live = false;
      if (t) clearInterval(t);
    };
  }, [tick, ...deps]);
  return { data, error, reload };
}
