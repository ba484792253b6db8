export { serverLinkWords, serverSyncPercent } from '../../domain/server-link-words.ts';
export { redeemServerEnrolment } from './redeem-server-enrolment.ts';
export { type ServerBmcCall, serverBmcOf } from './server-bmc.ts';
export { fenceServer } from './server-fence.ts';
export { checkServerOff, refuseRunningServer } from './server-off.ts';
export {
  type AddServerRequest,
  addServer,
  issueServerEnrolment,
  type ServerEnrolmentIssued,
  setServerBmc,
} from './server-onboarding.ts';
