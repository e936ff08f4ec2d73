import type { SearchAttributeKey } from '@temporalio/common/lib/search-attributes';

/** The monitoring group a run belongs to: `KiteGroup = "fleet-a"` in the Web UI or `temporal workflow list`. */
export const KITE_GROUP: SearchAttributeKey<'KEYWORD'> = { name: 'KiteGroup', type: 'KEYWORD' };

/** `ON` while Cloud Monitoring is enabled for the group, `OFF` while it is disabled. */
export const KITE_SYNC_STATE: SearchAttributeKey<'KEYWORD'> = { name: 'KiteSyncState', type: 'KEYWORD' };
