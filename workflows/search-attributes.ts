import type { SearchAttributeKey, SearchAttributePair } from '@temporalio/common/lib/search-attributes';
import type { GroupConfig } from './definitions';

/** The monitoring group a run belongs to: `KiteGroup = "fleet-a"` in the Web UI or `temporal workflow list`. */
export const KITE_GROUP: SearchAttributeKey<'KEYWORD'> = { name: 'KiteGroup', type: 'KEYWORD' };

/** `ON` while Cloud Monitoring is enabled for the group, `OFF` while it is disabled. */
export const KITE_SYNC_STATE: SearchAttributeKey<'KEYWORD'> = { name: 'KiteSyncState', type: 'KEYWORD' };

/** What a group's run shows in the Web UI and `kite-cc list`: search attributes and memo. */
export interface GroupVisibility {
  searchAttributes: SearchAttributePair[];
  memo: { config: GroupConfig };
}

/**
 * The one definition of a group's search attributes and memo. The workflow upserts them whenever its
 * configuration changes; a client starting a run may pass them too, so the group is listed before its first task.
 */
export function groupVisibility(config: GroupConfig): GroupVisibility {
  return {
    searchAttributes: [
      { key: KITE_GROUP, value: config.group },
      { key: KITE_SYNC_STATE, value: config.enabled ? 'ON' : 'OFF' },
    ],
    memo: { config: { ...config } },
  };
}
