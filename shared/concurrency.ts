/** Runs `work` over `items` with at most `concurrency` at once; results keep the items' order. */
export async function mapPool<T, R>(
  items: T[],
  concurrency: number,
  work: (item: T, index: number) => Promise<R>
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, lane));
  return results;
}

/**
 * Like mapPool, but items with the same key run one after another, in their order: two changes of one SIM in a
 * call must reach the cloud in sequence, or an older value could overwrite a newer one.
 */
export async function mapPoolByKey<T, R>(
  items: T[],
  key: (item: T) => string,
  concurrency: number,
  work: (item: T) => Promise<R>
): Promise<R[]> {
  const groups = new Map<string, number[]>();
  items.forEach((item, i) => {
    const k = key(item);
    const group = groups.get(k);
    if (group) group.push(i);
    else groups.set(k, [i]);
  });
  const results = new Array<R>(items.length);
  await mapPool([...groups.values()], concurrency, async (indexes) => {
    for (const i of indexes) results[i] = await work(items[i]);
  });
  return results;
}
