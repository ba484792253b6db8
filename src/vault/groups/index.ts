export {
  type CutDisk,
  type CutParticipant,
  DEFAULT_HOLD_TIMEOUT_MS,
  type GroupCut,
  type GroupCutOptions,
  takeGroupCut,
} from './group-cut.ts';
export { GroupScheduler, type GroupSchedulerOptions } from './group-scheduler.ts';
export {
  addMember,
  type ConsistencyGroup,
  createGroup,
  cutGroupNow,
  cutParticipants,
  getGroup,
  groupMembers,
  listGroups,
  removeMember,
} from './group-service.ts';
