import type { VaultContext } from '../../vault/vault-context.ts';
import type { RouteDefinition } from '../route.ts';
import { alertRoutes } from './alert-routes.ts';
import { drillRoutes } from './drill-routes.ts';
import { groupRoutes } from './group-routes.ts';
import { hostRoutes } from './host-routes.ts';
import { jobRoutes } from './job-routes.ts';
import { machineRoutes } from './machine-routes.ts';
import { planRoutes } from './plan-routes.ts';
import { policyRoutes } from './policy-routes.ts';
import { rpoRoutes } from './rpo-routes.ts';
import { scriptRoutes } from './script-routes.ts';
import { serverRoutes } from './server-routes.ts';
import { sessionRoutes } from './session-routes.ts';
import { siteRoutes } from './site-routes.ts';
import { systemRoutes } from './system-routes.ts';
import { tokenRoutes } from './token-routes.ts';
import { viewRoutes } from './view-routes.ts';

export function allRoutes(vault: VaultContext): RouteDefinition[] {
  return [
    ...systemRoutes(vault),
    ...sessionRoutes(),
    ...siteRoutes(vault),
    ...hostRoutes(vault),
    ...policyRoutes(vault),
    ...machineRoutes(vault),
    ...serverRoutes(vault),
    ...viewRoutes(vault),
    ...groupRoutes(vault),
    ...planRoutes(vault),
    ...drillRoutes(vault),
    ...scriptRoutes(vault),
    ...rpoRoutes(vault),
    ...jobRoutes(vault),
    ...alertRoutes(vault),
    ...tokenRoutes(vault),
  ];
}
