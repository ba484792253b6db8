import { isoNow } from '../../clock/index.ts';
import type { Machine } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import type { ServerEnrolment } from '../../host/host-services.ts';
import type { ServerEnrolmentToken } from '../../store/index.ts';
import { hashSecret, parseEnrolmentToken, SERVER_ENROLMENT_TOKEN_PREFIX } from '../token-secret.ts';
import type { VaultContext } from '../vault-context.ts';

/** Why a known token no longer works, or null while it does (at `now`). */
function spent(token: ServerEnrolmentToken, machine: Machine, now: string): string | null {
  const again = `; issue a new one with 'haven servers enrolment ${machine.name}'`;
  if (token.usedAt !== null) return `was already used at ${token.usedAt}${again}`;
  if (token.replacedAt !== null) return `was replaced by a newer token at ${token.replacedAt}${again}`;
  if (token.expiresAt <= now) return `expired at ${token.expiresAt}${again}`;
  return null;
}

/**
 * A server's agent enrolling through its primary host (`servers.redeemEnrolment`
 * on the control channel): the token must be known, unused, not replaced and
 * unexpired, and presented by the server's primary host. The vault marks it
 * used (one of concurrent redeemers wins) and records when the server enrolled.
 */
export async function redeemServerEnrolment(
  vault: VaultContext,
  hostId: string,
  params: unknown,
): Promise<ServerEnrolment> {
  const { store } = vault;
  const text = (params as { token?: unknown } | null)?.token;
  const parsed = typeof text === 'string' ? parseEnrolmentToken(text, SERVER_ENROLMENT_TOKEN_PREFIX) : null;
  const token = parsed ? await store.serverEnrolments.get(parsed.id) : undefined;
  if (!parsed || !token || token.secretHash !== hashSecret(parsed.secret)) {
    throw new HavenError('unauthenticated', 'Unknown server enrolment token (no server was issued it)');
  }
  const machine = await store.machines.get(token.machineId);
  if (!machine?.server) {
    throw new HavenError('unauthenticated', 'Unknown server enrolment token (its server no longer exists)');
  }
  const details = { machineId: machine.id, machineName: machine.name };
  if (machine.primaryHostId !== hostId) {
    const presentedBy = (await store.hosts.get(hostId))?.name ?? hostId;
    const primary = (await store.hosts.get(machine.primaryHostId))?.name ?? machine.primaryHostId;
    throw new HavenError(
      'forbidden',
      `The enrolment token of server '${machine.name}' was presented through host '${presentedBy}', but the server's primary host is '${primary}': enrol the server's agent at '${primary}'`,
      { ...details, hostId },
    );
  }
  const now = isoNow(vault.clock);
  const refused = (why: string) =>
    new HavenError('unauthenticated', `The enrolment token of server '${machine.name}' ${why}`, details);
  const early = spent(token, machine, now);
  if (early) throw refused(early);
  if (!(await store.serverEnrolments.consume(token.id, now))) {
    // Another redeemer won the race (or the token was replaced meanwhile): say which.
    const current = await store.serverEnrolments.get(token.id);
    throw refused((current && spent(current, machine, now)) ?? 'is no longer valid');
  }
  await store.machines.update({ ...machine, server: { ...machine.server, enrolledAt: now }, updatedAt: now });
  return {
    machineId: machine.id,
    name: machine.name,
    disks: machine.disks.map((d) => ({
      diskId: d.id,
      device: d.serverDevice ?? d.source,
      sizeBytes: d.sizeBytes,
    })),
    writeBehind: machine.server.writeBehind,
    nbdTimeoutSeconds: machine.server.nbdTimeoutSeconds,
  };
}
