export { groupSyncWorkflow } from './group-sync';
