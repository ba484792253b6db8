export {
  type AppConsistentResult,
  hookQuiescer,
  type Quiescer,
  reportAppConsistency,
  takeAppConsistentPoint,
} from './app-consistent-point.ts';
