/** Settings of the null target (targets/null.ts), which publishes nowhere and counts. */
import { z } from 'zod';
import { strictSettings } from '../shared/settings';
import { commonTargetShape, intIn } from './schema';

export const nullTargetSchema = strictSettings({
  type: z.literal('null'),
  ...commonTargetShape,
  /** Simulated latency per publish call, in ms. @default 0 */
  latencyMs: intIn(0, 600_000).default(0),
});

/** Publishes nowhere; counts items and keys (benchmarks, dry runs). */
export type NullTargetConfig = z.output<typeof nullTargetSchema>;
