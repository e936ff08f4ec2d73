/**
 * `sim` and `failures`: what the connector's state in Redis says about one SIM, or about a group's failing SIMs.
 * They read Redis directly (KITE_REDIS_URL, KITE_REDIS_PREFIX, as the worker), so they need no worker.
 */
import { WorkflowNotFoundError } from '@temporalio/client';
import { z } from 'zod';
import { ConfigError } from '../shared/config-error';
import { parseSettings, textOr, type Env } from '../shared/settings';
import { connectRedis, describeRedis, redisUrlSetting } from '../state/redis';
import { StateStore, type AuditEntry, type SimState, type StoredFailure } from '../state/store';
import type { GroupConfig } from '../workflows/definitions';
import { groupHandle, type CommandContext } from './commands';
import { CliError, ExitCode, usageError } from './errors';
import { toCliError } from './errors-map';
import { table, workflowUrl } from './format';

const redisSettingsSchema = z.object({
  /** As the worker's: one server or a Cluster (state/redis.ts). @default 'redis://127.0.0.1:6379' (KITE_REDIS_URL) */
  url: redisUrlSetting('redis://127.0.0.1:6379'),
  /** As the worker's. @default 'cc' (KITE_REDIS_PREFIX) */
  prefix: textOr('cc'),
});

/** The worker's Redis, from the same variables; `use` gets a store and the connection is closed afterwards. */
export async function withStore<T>(env: Env, use: (store: StateStore) => Promise<T>): Promise<T> {
  let settings;
  try {
    settings = parseSettings(redisSettingsSchema, { url: 'KITE_REDIS_URL', prefix: 'KITE_REDIS_PREFIX' }, env, {});
  } catch (err) {
    if (err instanceof ConfigError) throw usageError(`invalid configuration: ${err.message}`);
    throw err;
  }
  const redis = connectRedis(settings.url, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 5_000 });
  redis.on('error', () => undefined); // reported by the command that fails
  try {
    await redis.connect();
  } catch (err) {
    redis.disconnect();
    throw new CliError(
      `cannot reach ${describeRedis(settings.url)} (${(err as Error).message}): set KITE_REDIS_URL as for the worker`,
      ExitCode.unreachable
    );
  }
  try {
    return await use(new StateStore(redis, { prefix: settings.prefix }));
  } finally {
    redis.disconnect();
  }
}

/** The group's targets, from its workflow's memo and from Redis; exit code 3 when neither knows the group. */
async function groupTargets(ctx: CommandContext, store: StateStore, group: string) {
  let config: GroupConfig | undefined;
  try {
    const description = await groupHandle(ctx, group).describe();
    config = (description.memo as { config?: GroupConfig } | undefined)?.config;
  } catch (err) {
    if (!(err instanceof WorkflowNotFoundError)) throw toCliError(err, ctx.settings, group);
  }
  const footprint = await store.groupFootprint(group);
  if (!config && footprint.targets.length === 0 && footprint.snapshotCycles.length === 0) {
    throw new CliError(
      `group ${group} is unknown: it has no workflow and no state in Redis. Start it with \`kite-cc start ${group}\``,
      ExitCode.notFound
    );
  }
  const targets = [...new Set([...(config?.targets ?? []), ...footprint.targets])];
  return { targets, snapshotCycles: footprint.snapshotCycles };
}

const time = (at: number) => new Date(at).toISOString().replace(/\.\d+Z$/, 'Z');

function auditLine(entry: AuditEntry): string {
  const what = entry.failed
    ? `FAILED: ${entry.failed}`
    : `published ${entry.full ? 'in full' : Object.keys(entry.published ?? {}).join(', ')}`;
  return `${time(entry.at)}  ${entry.target}  ${what}`;
}

/** One SIM as `sim --json` prints it. */
export interface SimReport extends SimState {
  group: string;
  iccid: string;
  /** Per target, when it last acknowledged a publish of this SIM (from the audit trail), epoch ms. */
  lastPublishedAt: Record<string, number | undefined>;
}

/** `sim <group> <iccid>`: the SIM's record, what each target holds, pending, failing, and its audit trail. */
export async function showSim(ctx: CommandContext, env: Env, group: string, iccid: string, json: boolean) {
  if (!/^\d{6,22}$/.test(iccid)) throw usageError(`ICCID ${JSON.stringify(iccid)} is invalid: 6 to 22 digits`);
  return withStore(env, async (store) => {
    const { targets, snapshotCycles } = await groupTargets(ctx, store, group);
    const state = await store.simState(group, iccid, snapshotCycles, targets);
    const known =
      state.snapshot || state.rejected || state.audit.length || Object.values(state.targets).some((t) => t.published);
    const anything = known || Object.values(state.targets).some((t) => t.pending || t.failure);
    if (!anything) {
      throw new CliError(
        `SIM ${iccid} is not in group ${group}: no snapshot, target or audit entry holds it ` +
          '(check the ICCID, or run `kite-cc failures ' +
          group +
          '` to list the failing ones)',
        ExitCode.notFound
      );
    }
    const lastPublishedAt: SimReport['lastPublishedAt'] = {};
    for (const t of targets) lastPublishedAt[t] = state.audit.find((e) => e.target === t && e.published)?.at;
    const report: SimReport = { group, iccid, ...state, lastPublishedAt };
    if (json) {
      ctx.io.out(JSON.stringify(report, null, 2));
      return report;
    }
    const out = ctx.io.out;
    out(`SIM ${iccid} in group ${group}`);
    if (state.rejected) {
      out(
        `rejected by the fetch of cycle ${state.rejected.cycle}: ${state.rejected.reason} ` +
          "(Kite's entry for it cannot be published; its targets keep what they hold)"
      );
    }
    if (state.snapshot) {
      const unchanged = state.snapshot.unchanged ? ', unchanged in Kite: as its targets hold it' : '';
      out(`record (snapshot of cycle ${state.snapshot.cycle}${unchanged}):`);
      for (const [key, value] of Object.entries(JSON.parse(state.snapshot.record) as Record<string, unknown>))
        out(`  ${key}: ${JSON.stringify(value)}`);
    } else if (Object.values(state.targets).some((t) => t.published)) {
      // A cycle's snapshot is dropped once diffed: the record is what the targets hold, with what is pending.
      out('record: as its targets hold it, below (no cycle is being fetched or diffed now)');
    } else out('record: not in the current snapshot (the SIM left the group, or a fetch is under way)');
    for (const t of targets) {
      const s = state.targets[t];
      out(`target ${t}:`);
      out(`  holds: ${s.published ?? 'nothing (never acknowledged)'}`);
      out(`  pending: ${s.pending ?? 'none'}`);
      if (s.inFlight) out(`  in flight (sent, not acknowledged): ${s.inFlight}`);
      out(`  failing: ${s.failure ? `since ${time(s.failure.at)}: ${s.failure.reason}` : 'no'}`);
      const at = lastPublishedAt[t];
      out(`  last acknowledged publish: ${at ? time(at) : 'none in the audit trail'}`);
    }
    out(`audit trail (newest first):`);
    if (!state.audit.length) out('  (empty)');
    for (const entry of state.audit) out(`  ${auditLine(entry)}`);
    out(`web UI: ${workflowUrl(ctx.settings, group)}`);
    return report;
  });
}

/** One reason's failing SIMs of a target. */
export interface FailureGroup {
  target: string;
  reason: string;
  count: number;
  /** Earliest failure, epoch ms. */
  since: number;
  /** Up to 5 of the SIMs. */
  sample: string[];
}

/** `failures <group> [--target T]`: failing SIMs grouped by target and reason, with counts. */
export async function showFailures(
  ctx: CommandContext,
  env: Env,
  group: string,
  options: { target?: string; json: boolean }
): Promise<FailureGroup[]> {
  return withStore(env, async (store) => {
    const { targets } = await groupTargets(ctx, store, group);
    if (options.target && !targets.includes(options.target)) {
      throw new CliError(
        `group ${group} has no target ${options.target} (its targets: ${targets.join(', ') || 'none'})`,
        ExitCode.notFound
      );
    }
    const groups: FailureGroup[] = [];
    for (const target of options.target ? [options.target] : targets) {
      const byReason = new Map<string, FailureGroup>();
      for await (const page of store.scanFailures(group, target)) {
        for (const [iccid, failure] of page as [string, StoredFailure][]) {
          const g = byReason.get(failure.reason) ?? {
            target,
            reason: failure.reason,
            count: 0,
            since: failure.at,
            sample: [],
          };
          g.count++;
          g.since = Math.min(g.since, failure.at);
          if (g.sample.length < 5) g.sample.push(iccid);
          byReason.set(failure.reason, g);
        }
      }
      groups.push(...[...byReason.values()].sort((a, b) => b.count - a.count));
    }
    if (options.json) {
      ctx.io.out(JSON.stringify(groups, null, 2));
      return groups;
    }
    const total = groups.reduce((n, g) => n + g.count, 0);
    if (!total) ctx.io.out(`no failing SIMs in group ${group}${options.target ? ` at ${options.target}` : ''}`);
    else {
      ctx.io.out(`${total} failing SIMs in group ${group}, by reason:`);
      const rows = groups.map((g) => [g.target, String(g.count), time(g.since), g.reason, g.sample.join(',')]);
      table(['TARGET', 'SIMS', 'SINCE', 'REASON', 'FOR EXAMPLE'], rows).forEach((l) => ctx.io.out(l));
      ctx.io.out(`one SIM in detail: kite-cc sim ${group} <iccid>; publish again: kite-cc resync ${group}`);
    }
    return groups;
  });
}
