export { type Clock, isoNow, ManualClock, systemClock } from './clock.ts';
