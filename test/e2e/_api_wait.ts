/**
 * Bounded waiting on events instead of sleeping: re-check a condition each
 * time something reports a change, fail with a message after a timeout.
 * @module
 */

/** A condition not met in time; the message says what was awaited and for how long. */
export class WaitTimeoutError extends Error {
  override name = "WaitTimeoutError";
}

/** Something that calls its listeners after each change, and can stop calling one. */
export interface ChangeSource {
  onChange(listener: () => void): () => void;
}

/**
 * Resolves with the first non-undefined result of `check`, run now and after
 * every change `source` reports; rejects with WaitTimeoutError after `timeoutMs`.
 */
export function waitUntil<T>(
  source: ChangeSource,
  check: () => T | undefined,
  options: { what: string; timeoutMs?: number },
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 5000;
  return new Promise<T>((resolve, reject) => {
    let stop = (): void => {};
    const timer = setTimeout(() => {
      stop();
      reject(new WaitTimeoutError(`Timed out after ${timeoutMs} ms waiting for ${options.what}`));
    }, timeoutMs);
    const attempt = (): void => {
      let result: T | undefined;
      try {
        result = check();
      } catch (e) {
        stop();
        clearTimeout(timer);
        reject(e);
        return;
      }
      if (result === undefined) return;
      stop();
      clearTimeout(timer);
      resolve(result);
    };
    stop = source.onChange(attempt);
    attempt();
  });
}

/** A ChangeSource to call by hand: `changed()` wakes every waiter. */
export class ChangeNotifier implements ChangeSource {
  #listeners = new Set<() => void>();

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  changed(): void {
    for (const l of [...this.#listeners]) l();
  }
}
