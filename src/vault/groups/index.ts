export {
  type CutDisk,
  type CutParticipant,
  DEFAULT_HOLD_TIMEOUT_MS,
  type GroupCut,
  type GroupCutOptions,
  takeGroupCut,
} from './group-cut.ts';
