export {
  type AppConsistentResult,
  clearNoQuiescer,
  guestAgentQuiescer,
  hookQuiescer,
  type Quiescer,
  reportAppConsistency,
  reportNoQuiescer,
  takeAppConsistentPoint,
} from './app-consistent-point.ts';
