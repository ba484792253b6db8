/** Runs operations on one machine one at a time (in call order); different machines run in parallel. */
export class PerMachineQueue {
  readonly #tails = new Map<string, Promise<unknown>>();

  async run<T>(name: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(name) ?? Promise.resolve();
    const next = previous.then(work, work);
    const settled = next.catch(() => {});
    this.#tails.set(name, settled);
    try {
      return await next;
    } finally {
      if (this.#tails.get(name) === settled) this.#tails.delete(name);
    }
  }
}
