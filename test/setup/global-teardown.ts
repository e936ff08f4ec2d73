import type { SharedStack } from './global-setup';
import { stop } from './processes';

export default async function globalTeardown(): Promise<void> {
  const stack = (globalThis as { __kiteStack?: SharedStack }).__kiteStack;
  if (!stack) return;
  await stack.env?.teardown();
  await Promise.all(stack.children.map((child) => stop(child)));
}
