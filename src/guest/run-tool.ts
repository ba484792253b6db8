import { execFile } from 'node:child_process';
import { HavenError } from '../errors/index.ts';

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a host tool (apt-get, dpkg, mkfs.ext4, e2fsck...) to completion. A
 * missing binary is `not_available` naming the Debian package to install; a
 * non-zero exit is returned, not thrown, because several callers read it
 * (e2fsck's exit code is its verdict).
 */
export function runTool(
  command: string,
  args: readonly string[],
  options: { cwd?: string; debianPackage?: string } = {},
): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      { cwd: options.cwd, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, LC_ALL: 'C' } },
      (error, stdout, stderr) => {
        if (error && (error as NodeJS.ErrnoException).code === 'ENOENT') {
          reject(
            new HavenError('not_available', `'${command}' is not installed on this host`, {
              command,
              install: options.debianPackage ?? null,
            }),
          );
          return;
        }
        const code = error ? Number((error as { code?: unknown }).code ?? 1) : 0;
        resolve({ code: Number.isNaN(code) ? 1 : code, stdout, stderr });
      },
    );
  });
}

/** Like runTool, but a non-zero exit is an `internal` error carrying the tool's output. */
export async function runToolOrThrow(
  command: string,
  args: readonly string[],
  options: { cwd?: string; debianPackage?: string } = {},
): Promise<ToolResult> {
  const result = await runTool(command, args, options);
  if (result.code !== 0) {
    throw new HavenError('internal', `'${command} ${args.join(' ')}' exited with ${result.code}`, {
      command,
      args,
      code: result.code,
      stderr: result.stderr.slice(-4000),
    });
  }
  return result;
}
