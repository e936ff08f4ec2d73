/** Reads one cycle's figures from a workflow history: stage times, cycle time, events. */
import type { WorkflowHandle } from '@temporalio/client';

type History = Awaited<ReturnType<WorkflowHandle['fetchHistory']>>;
export type HistoryEvent = NonNullable<History['events']>[number];

export interface CycleFigures {
  /** From the request (start or syncNow signal) to the workflow task that closed the cycle, ms. */
  cycleMs: number;
  /** Activity scheduled → completed, ms, by activity type (summed when an activity type runs more than once). */
  stages: Record<string, number>;
}

const ms = (e: HistoryEvent) => Number(e.eventTime?.seconds ?? 0) * 1000 + (e.eventTime?.nanos ?? 0) / 1e6;

/** Figures of the events `from`..end (0-based index into `events`), for a cycle started by the event at `from`. */
export function cycleFigures(events: HistoryEvent[], from: number): CycleFigures {
  const slice = events.slice(from);
  const scheduled = new Map<string, { type: string; at: number }>();
  const stages: Record<string, number> = {};
  let lastCompletion = -1;
  slice.forEach((e, i) => {
    const s = e.activityTaskScheduledEventAttributes;
    if (s) scheduled.set(String(e.eventId), { type: s.activityType?.name ?? '?', at: ms(e) });
    const done = e.activityTaskCompletedEventAttributes;
    if (done) {
      const from = scheduled.get(String(done.scheduledEventId));
      if (from) stages[from.type] = (stages[from.type] ?? 0) + ms(e) - from.at;
      lastCompletion = i;
    }
  });
  const closing = slice.findIndex((e, i) => i > lastCompletion && e.workflowTaskCompletedEventAttributes);
  const end = closing >= 0 ? slice[closing] : slice[slice.length - 1];
  return { cycleMs: ms(end) - ms(slice[0]), stages };
}

/** Index of the last event that requested a cycle (the start, or a syncNow signal). */
export function lastRequest(events: HistoryEvent[]): number {
  for (let i = events.length - 1; i >= 0; i--) {
    const e = events[i];
    if (e.workflowExecutionStartedEventAttributes) return i;
    if (e.workflowExecutionSignaledEventAttributes?.signalName === 'syncNow') return i;
  }
  return 0;
}
