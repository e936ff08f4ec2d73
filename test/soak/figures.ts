/**
 * The soak's measurements, apart from its orchestration: rates from arrival times, what a workflow's pending
 * activities say about heartbeats (polled from Temporal while the soak runs) and what its history says about
 * attempts per cycle.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { optionalTsToMs } from '@temporalio/common/lib/time';
import type { temporal } from '@temporalio/proto';

/** The most of `times` (epoch ms, ascending) that fall in any window of `windowMs`. */
export function peakInWindow(times: number[], windowMs: number): number {
  return busiestWindow(times, windowMs).count;
}

/** The window of `windowMs` holding the most of `times` (epoch ms, ascending): its count and when it ended. */
export function busiestWindow(times: number[], windowMs: number): { count: number; endedAt: number } {
  let best = { count: 0, endedAt: 0 };
  for (let i = 0, j = 0; i < times.length; i++) {
    while (times[j] <= times[i] - windowMs) j++;
    if (i - j + 1 > best.count) best = { count: i - j + 1, endedAt: times[i] };
  }
  return best;
}

/**
 * A meter's own stalls, as figures: the longest while the evolving phase ran (from `since`), and the longest that
 * ended in the busiest second (ending at `peakEndedAt`): what arrived during it was timestamped up to that late,
 * so that second may hold operations that reached the door before it.
 */
export function stallFigures(stalls: [at: number, ms: number][], since: number, peakEndedAt: number) {
  const longest = (list: [number, number][]) => list.reduce((max, [, ms]) => Math.max(max, ms), 0);
  return {
    longestStallMs: longest(stalls.filter(([at]) => at >= since)),
    longestStallInPeakSecondMs: longest(stalls.filter(([at]) => at > peakEndedAt - 1_000 && at <= peakEndedAt)),
  };
}

/** Rate figures of one peer: the peak in any second, the peak average over any 10 s, both against the budget. */
export interface RateFigures {
  operations: number;
  peakPerSecond: number;
  /** When (epoch ms) the busiest second ended. */
  peakSecondEndedAt: number;
  /** Operations in the busiest 10 s window. */
  peakIn10s: number;
  /** The same, divided by 10. */
  peakPer10sAverage: number;
  budgetPerSecond: number;
  burst: number;
}

export function rateFigures(times: number[], budgetPerSecond: number, burst: number): RateFigures {
  const sorted = [...times].sort((a, b) => a - b);
  const peakIn10s = peakInWindow(sorted, 10_000);
  const second = busiestWindow(sorted, 1_000);
  return {
    operations: sorted.length,
    peakPerSecond: second.count,
    peakSecondEndedAt: second.endedAt,
    peakIn10s,
    peakPer10sAverage: peakIn10s / 10,
    budgetPerSecond,
    burst,
  };
}

/**
 * The share of a budget used over `spans` (epoch ms [from, to)): operations in them over what the budget allows
 * in their total length. `spans` must not overlap.
 */
export function budgetShare(times: number[], spans: [number, number][], budgetPerSecond: number) {
  const seconds = spans.reduce((s, [from, to]) => s + (to - from) / 1000, 0);
  const used = times.filter((t) => spans.some(([from, to]) => t >= from && t < to)).length;
  return { seconds: Math.round(seconds), operations: used, share: seconds ? used / (budgetPerSecond * seconds) : 0 };
}

/** Merges touching or overlapping spans. */
export function mergeSpans(spans: [number, number][]): [number, number][] {
  const out: [number, number][] = [];
  for (const [from, to] of [...spans].sort((a, b) => a[0] - b[0])) {
    const last = out[out.length - 1];
    if (last && from <= last[1]) last[1] = Math.max(last[1], to);
    else out.push([from, to]);
  }
  return out;
}

type PendingActivity = temporal.api.workflow.v1.IPendingActivityInfo;

/** TimeoutType.TIMEOUT_TYPE_HEARTBEAT in Temporal's API. */
const HEARTBEAT_TIMEOUT = 4;
/** PendingActivityState.PENDING_ACTIVITY_STATE_STARTED. */
const STARTED = 2;

/** A heartbeat timeout Temporal recorded for one attempt, and whether a SIGKILL of its worker explains it. */
export interface HeartbeatTimeout {
  workflowId: string;
  activity: string;
  attempt: number;
  worker?: string;
  killed: boolean;
}

/** Polls further apart than this do not measure a heartbeat gap (the machine or the server stalled the poll). */
const GAP_POLL_MAX_MS = 2_000;

/**
 * Watches the pending activities of workflows by polling `describe()`: the longest time between two heartbeats
 * of one attempt (seen by polls at most 2 s apart: an upper bound of the real gap, since beats between two polls
 * are not seen; the server records a beat at most every 2 s, the worker's throttle), the heartbeat timeouts Temporal
 * recorded (from the next attempt's last failure), and when work was outstanding: a fetch running in some group
 * (Kite work) and a publish running per target (from its heartbeat details).
 */
export class ActivityWatch {
  /** Longest gap between consecutive heartbeats (or the attempt's start and its first beat) of one attempt, ms. */
  longestGapMs = 0;
  longestGap?: { workflowId: string; activity: string; attempt: number };
  readonly timeouts: HeartbeatTimeout[] = [];
  /** When work of a kind ran (`fetch`, `publish:<target>`): [from, to) between consecutive polls, unmerged. */
  readonly busy = new Map<string, [number, number][]>();
  polls = 0;
  /** Longest time between two polls, ms: a gap longer than this may have gone unmeasured. */
  longestPollIntervalMs = 0;
  /** When (epoch ms) the longest interval between two polls ended: a stall of this process or of the server. */
  longestPollIntervalAt = 0;
  private readonly lastBeat = new Map<string, number>();
  /** Attempts seen running before their first heartbeat: their start to first beat is a gap. */
  private readonly beatless = new Set<string>();
  /** Whether the current poll follows the last one closely enough to measure gaps. */
  private close = false;
  private readonly seenTimeouts = new Set<string>();
  private lastPoll?: { at: number; busy: Set<string> };

  /** `killedPids`: workers this soak SIGKILLed; a timeout of an attempt they ran is explained by the kill. */
  constructor(private readonly killedPids: Set<number>) {}

  /** When work of `kind` ran, merged. */
  spans(kind: string): [number, number][] {
    return mergeSpans(this.busy.get(kind) ?? []);
  }

  async poll(handles: WorkflowHandle[]): Promise<void> {
    const at = Date.now();
    const described = await Promise.all(handles.map((h) => h.describe().catch(() => undefined)));
    const since = this.lastPoll ? Date.now() - this.lastPoll.at : 0;
    if (since > this.longestPollIntervalMs) [this.longestPollIntervalMs, this.longestPollIntervalAt] = [since, at];
    this.close = this.lastPoll !== undefined && since <= GAP_POLL_MAX_MS;
    const busy = new Set<string>();
    described.forEach((d, i) => {
      for (const p of d?.raw.pendingActivities ?? []) {
        if (p.state === STARTED && p.activityType?.name === 'fetchSnapshot') busy.add('fetch');
        const target = p.state === STARTED ? publishTarget(p) : undefined;
        if (target) busy.add(`publish:${target}`);
        this.observe(handles[i].workflowId, p);
      }
    });
    for (const kind of this.lastPoll?.busy ?? []) {
      if (!this.busy.has(kind)) this.busy.set(kind, []);
      this.busy.get(kind)!.push([this.lastPoll!.at, at]);
    }
    this.lastPoll = { at, busy };
    this.polls++;
  }

  private observe(workflowId: string, p: PendingActivity): void {
    const activity = p.activityType?.name ?? '?';
    const attempt = p.attempt ?? 1;
    const key = `${workflowId}|${p.activityId}|${attempt}`;
    const timeout = p.lastFailure?.timeoutFailureInfo?.timeoutType;
    if (attempt > 1 && Number(timeout) === HEARTBEAT_TIMEOUT) {
      const failed = `${workflowId}|${p.activityId}|${attempt - 1}`;
      if (!this.seenTimeouts.has(failed)) {
        this.seenTimeouts.add(failed);
        const worker = p.lastWorkerIdentity ?? undefined;
        const pid = Number(/^(\d+)@/.exec(worker ?? '')?.[1]);
        this.timeouts.push({ workflowId, activity, attempt: attempt - 1, worker, killed: this.killedPids.has(pid) });
      }
    }
    if (p.state !== STARTED) return;
    const started = optionalTsToMs(p.lastStartedTime);
    const last = optionalTsToMs(p.lastHeartbeatTime);
    // A new attempt may still show the last beat of the attempt before it.
    const beat = last !== undefined && (started === undefined || last >= started) ? last : undefined;
    if (beat === undefined) {
      this.beatless.add(key);
      return;
    }
    const before = this.lastBeat.get(key) ?? (this.beatless.has(key) ? started : undefined);
    if (before !== undefined && beat > before && this.close) this.gap(beat - before, workflowId, activity, attempt);
    this.lastBeat.set(key, beat);
  }

  private gap(ms: number, workflowId: string, activity: string, attempt: number): void {
    if (ms <= this.longestGapMs) return;
    this.longestGapMs = ms;
    this.longestGap = { workflowId, activity, attempt };
  }
}

/** The target of a running publish activity, from its heartbeat details (`{phase: 'publish', target, …}`). */
function publishTarget(p: PendingActivity): string | undefined {
  if (p.activityType?.name !== 'publishChanges') return undefined;
  const data = p.heartbeatDetails?.payloads?.[0]?.data;
  if (!data) return undefined;
  try {
    return (JSON.parse(Buffer.from(data).toString('utf8')) as { target?: string }).target;
  } catch {
    return undefined;
  }
}

/** Per activity type over a workflow's history: activities run, attempts they took, the most for one. */
export interface AttemptFigures {
  activities: number;
  attempts: number;
  maxAttempts: number;
}

/** Attempts per activity type in `handles`' histories (the current run of each), and cycles (fetches scheduled). */
export async function attemptsPerActivity(handles: WorkflowHandle[]) {
  const byType: Record<string, AttemptFigures> = {};
  for (const handle of handles) {
    const events = (await handle.fetchHistory()).events ?? [];
    const typeOf = new Map<string, string>();
    for (const e of events) {
      const scheduled = e.activityTaskScheduledEventAttributes;
      if (scheduled) typeOf.set(String(e.eventId), scheduled.activityType?.name ?? '?');
      const started = e.activityTaskStartedEventAttributes;
      if (started) {
        const type = typeOf.get(String(started.scheduledEventId)) ?? '?';
        const figures = (byType[type] ??= { activities: 0, attempts: 0, maxAttempts: 0 });
        figures.activities++;
        figures.attempts += started.attempt ?? 1;
        figures.maxAttempts = Math.max(figures.maxAttempts, started.attempt ?? 1);
      }
    }
  }
  const cycles = byType.fetchSnapshot?.activities ?? 0;
  const attempts = Object.values(byType).reduce((n, f) => n + f.attempts, 0);
  const activities = Object.values(byType).reduce((n, f) => n + f.activities, 0);
  return {
    cycles,
    activitiesPerCycle: cycles ? +(activities / cycles).toFixed(2) : 0,
    attemptsPerCycle: cycles ? +(attempts / cycles).toFixed(2) : 0,
    byType,
  };
}

/** Peak resident set size of a process so far (VmHWM), MB; 0 once it is gone. */
export function peakRssMb(pid: number | undefined, read: (file: string) => string): number {
  try {
    return Number(/VmHWM:\s+(\d+) kB/.exec(read(`/proc/${pid}/status`))?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}
