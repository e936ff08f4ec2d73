/**
 * Group workflows for tests that run real worker processes: started as `kite-cc start` starts them (the real
 * workflow, its search attributes and memo), with a workflow id of the test's own task queue so files never share
 * one, and their statuses read together.
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import { groupSyncWorkflow } from '../../workflows';
import { statusQuery, workflowIdForGroup, type GroupConfig, type GroupStatus } from '../../workflows/definitions';
import { groupVisibility } from '../../workflows/search-attributes';
import { waitUntil } from './wait-until';

/**
 * Starts one workflow per configuration, in order. `taskQueue` is every group's, or each group's by its index (a worker per
 * queue, when a test wants each group surely on another worker). The workflow id is the group's own, suffixed
 * with its task queue.
 */
export async function startGroupWorkflows(
  client: Client,
  configs: GroupConfig[],
  taskQueue: string | ((index: number) => string)
): Promise<WorkflowHandle<typeof groupSyncWorkflow>[]> {
  const handles: WorkflowHandle<typeof groupSyncWorkflow>[] = [];
  for (const [i, config] of configs.entries()) {
    const queue = typeof taskQueue === 'string' ? taskQueue : taskQueue(i);
    const { searchAttributes, memo } = groupVisibility(config);
    handles.push(
      await client.workflow.start(groupSyncWorkflow, {
        taskQueue: queue,
        workflowId: workflowIdForGroup(`${config.group}-${queue}`),
        args: [{ config }],
        typedSearchAttributes: searchAttributes,
        memo,
      })
    );
  }
  return handles;
}

/** Every group's status, in the order of `handles`. */
export function groupStatuses(handles: WorkflowHandle[]): Promise<GroupStatus[]> {
  return Promise.all(handles.map((h) => h.query(statusQuery)));
}

/**
 * Waits until every group completed at least `cycles` cycles in its workflow's life (and, with `idle`, runs none
 * now); returns their statuses then.
 */
export async function waitForGroupCycles(
  handles: WorkflowHandle[],
  cycles: number | number[],
  { timeoutMs = 180_000, idle = false }: { timeoutMs?: number; idle?: boolean } = {}
): Promise<GroupStatus[]> {
  let statuses: GroupStatus[] = [];
  const least = (i: number) => (typeof cycles === 'number' ? cycles : cycles[i]);
  let polls = 0;
  await waitUntil(
    async () => {
      if (polls++) await new Promise((r) => setTimeout(r, 250)); // queries of every group, 4 times a second at most
      statuses = await groupStatuses(handles);
      return statuses.every((s, i) => s.cyclesCompleted >= least(i) && (!idle || s.phase === 'idle'));
    },
    `every group completed ${typeof cycles === 'number' ? cycles : cycles.join('/')} cycle(s)${idle ? ' and is idle' : ''}`,
    timeoutMs
  );
  return statuses;
}
