import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { HavenError } from '../errors/index.ts';
import type { BmcAccess, BmcAction, BmcPower } from './host-services.ts';

/**
 * A server's baseboard management controller: its power, whatever runs on
 * it. One implementation per protocol (IPMI now; Redfish fits the same seam).
 */
interface Bmc {
  power(): Promise<BmcPower>;
  /** Hard power off, at once (the fence). */
  powerOff(): Promise<void>;
  /** An ACPI power button press: the OS shuts down in its own time, or ignores it. */
  softOff(): Promise<void>;
  powerOn(): Promise<void>;
  /** The device the server boots from next time only; later boots use its own order again. */
  bootNext(device: 'pxe' | 'disk'): Promise<void>;
}

/** How long a hard power off or a power on may take to show in the BMC's power status. */
const POWER_SETTLE_MS = 20_000;
const POLL_MS = 250;

/**
 * IPMI v2.0 over LAN through Debian's `ipmitool -I lanplus`. The password
 * reaches ipmitool in its environment (`-E`), never on its command line, so
 * no process listing shows it; errors name the BMC, never the password.
 */
function ipmiBmc(access: BmcAccess, options: { commandTimeoutMs?: number } = {}): Bmc {
  const where = `IPMI BMC ${access.user}@${access.address}:${access.port}`;
  const ipmitool = (...command: string[]): Promise<string> =>
    new Promise((resolve, reject) => {
      execFile(
        'ipmitool',
        [
          ...['-I', 'lanplus', '-H', access.address, '-p', String(access.port), '-U', access.user, '-E'],
          // A few retries of a few seconds: a BMC that does not answer is said so quickly.
          ...['-N', '2', '-R', '3'],
          ...(access.cipherSuite == null ? [] : ['-C', String(access.cipherSuite)]),
          ...command,
        ],
        {
          timeout: options.commandTimeoutMs ?? 30_000,
          env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', IPMI_PASSWORD: access.password },
        },
        (error, stdout, stderr) => {
          if (error === null) {
            resolve(String(stdout));
            return;
          }
          const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
          const said = String(stderr).trim().split('\n').filter(Boolean).at(-1) ?? error.message;
          reject(
            new HavenError(
              missing ? 'not_available' : 'unreachable',
              missing
                ? `${where}: ipmitool is not installed on this host (apt-get install ipmitool)`
                : `${where}: 'ipmitool ${command.join(' ')}' failed: ${said}`,
              { bmc: where, command: command.join(' ') },
            ),
          );
        },
      );
    });
  return {
    async power() {
      const out = await ipmitool('power', 'status');
      const state = /Chassis Power is (on|off)/.exec(out)?.[1];
      if (state !== 'on' && state !== 'off') {
        throw new HavenError('internal', `${where}: unexpected answer to 'power status': ${out.trim()}`, {
          bmc: where,
        });
      }
      return state;
    },
    async powerOff() {
      await ipmitool('power', 'off');
    },
    async softOff() {
      await ipmitool('power', 'soft');
    },
    async powerOn() {
      await ipmitool('power', 'on');
    },
    async bootNext(device) {
      await ipmitool('chassis', 'bootdev', device);
    },
  };
}

/**
 * One action, then the power read back. A hard off or a power on is waited
 * for, bounded, until the BMC shows it (some take a moment); the answer is
 * what the BMC says then, never what was asked.
 */
async function runBmcAction(bmc: Bmc, action: BmcAction): Promise<{ power: BmcPower }> {
  let settlesTo: BmcPower | null = null;
  switch (action) {
    case 'status':
      break;
    case 'power-off':
      await bmc.powerOff();
      settlesTo = 'off';
      break;
    case 'soft-off':
      await bmc.softOff();
      break;
    case 'power-on':
      await bmc.powerOn();
      settlesTo = 'on';
      break;
    case 'boot-pxe':
      await bmc.bootNext('pxe');
      break;
    case 'boot-disk':
      await bmc.bootNext('disk');
      break;
  }
  const deadline = performance.now() + POWER_SETTLE_MS;
  for (;;) {
    const power = await bmc.power();
    if (settlesTo === null || power === settlesTo || performance.now() >= deadline) return { power };
    await sleep(POLL_MS);
  }
}

const BMC_ACTIONS: readonly BmcAction[] = [
  'status',
  'power-off',
  'soft-off',
  'power-on',
  'boot-pxe',
  'boot-disk',
];

/** The host's `servers.bmc`: the call checked as it comes over the control channel, then run. */
export async function bmcCall(params: {
  access: BmcAccess;
  action: BmcAction;
}): Promise<{ power: BmcPower }> {
  const { access, action } = params ?? {};
  const refused = (field: string, what: string) =>
    new HavenError('bad_request', `bmc: ${field} must be ${what}`, { field });
  if (access?.protocol !== 'ipmi') throw refused('access.protocol', "'ipmi'");
  // No value may start with '-': each is one argument of ipmitool.
  if (typeof access.address !== 'string' || !/^[A-Za-z0-9.:][A-Za-z0-9.:_-]*$/.test(access.address)) {
    throw refused('access.address', 'a host name or IP address');
  }
  if (!Number.isInteger(access.port) || access.port < 1 || access.port > 65_535) {
    throw refused('access.port', 'a UDP port (1-65535)');
  }
  if (
    access.cipherSuite != null &&
    !(Number.isInteger(access.cipherSuite) && access.cipherSuite >= 0 && access.cipherSuite <= 17)
  ) {
    throw refused('access.cipherSuite', 'an RMCP+ cipher suite (0-17) or null');
  }
  if (typeof access.user !== 'string' || access.user.startsWith('-'))
    throw refused('access.user', 'a user name');
  if (typeof access.password !== 'string') throw refused('access.password', 'a string');
  if (!BMC_ACTIONS.includes(action)) throw refused('action', `one of ${BMC_ACTIONS.join(', ')}`);
  return runBmcAction(ipmiBmc(access), action);
}
