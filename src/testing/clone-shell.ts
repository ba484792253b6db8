import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { findQemuProcesses, waitForExit } from '../hypervisor/qemu-process.ts';
import { collectOutput, REPO_ROOT } from './child-process.ts';
import { until } from './until.ts';

/**
 * A directory laid out like a fresh clone after `npm ci` (the repo's sources
 * copied, without anything built or run: no portal/dist, no `.haven/`;
 * node_modules linked in) and a shell in it with
 * `haven` (bin/haven) on the PATH and no HAVEN_* settings: where the docs'
 * commands are run as an operator types them.
 */
export interface CloneShell {
  dir: string;
  env: NodeJS.ProcessEnv;
  /** One shell line, as typed in a terminal in the clone. */
  sh(line: string): Promise<{ code: number; stdout: string; stderr: string }>;
  /** The same, which must succeed; its standard output. */
  shOk(line: string): Promise<string>;
  /**
   * `haven up …` as typed in a first terminal: its own process group, up once
   * it says so (else it is killed and the start fails with its output).
   */
  startUp(line: string, options: { timeoutMs: number }): Promise<BackgroundUp>;
  /**
   * Kills the QEMU processes the clone's hosts left (they outlive `haven up`
   * by design: a test that fails with a machine running leaves it), then
   * deletes the clone.
   */
  remove(): Promise<void>;
}

/** A `haven up` running in the background of a clone shell. */
export interface BackgroundUp {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
  /** Kills its whole process group and waits for it. */
  stop(): Promise<void>;
}

export async function cloneShell(prefix: string): Promise<CloneShell> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  // Copied, not linked: Node runs a linked entry point from its real path, which would serve this checkout's build.
  for (const entry of ['package.json', 'package-lock.json', 'src', 'bin', 'portal']) {
    await cp(join(REPO_ROOT, entry), join(dir, entry), {
      recursive: true,
      filter: (source) => !/^portal\/(dist|\.dist-)/.test(relative(REPO_ROOT, source)),
    });
  }
  await symlink(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'));
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${join(dir, 'bin')}:${process.env.PATH}` };
  delete env.HAVEN_URL;
  delete env.HAVEN_TOKEN;
  delete env.HAVEN_DATABASE_URL;
  const sh = (line: string) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile('sh', ['-c', line], { cwd: dir, env, maxBuffer: 16 << 20 }, (error, stdout, stderr) =>
        resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
  return {
    dir,
    env,
    sh,
    shOk: async (line) => {
      const result = await sh(line);
      assert.equal(result.code, 0, `${line}\n${result.stdout}\n${result.stderr}`);
      return result.stdout;
    },
    startUp: async (line, { timeoutMs }) => {
      const child = spawn('sh', ['-c', `exec ${line}`], {
        cwd: dir,
        env,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const { output, exited } = collectOutput(child);
      const up: BackgroundUp = {
        child,
        output,
        exited,
        stop: async () => {
          try {
            process.kill(-child.pid!, 'SIGKILL');
          } catch {}
          await exited;
        },
      };
      try {
        await until('haven up to come up', async () => output().includes('is up.'), { timeoutMs });
      } catch (error) {
        await up.stop();
        assert.fail(`${(error as Error).message}:\n${output()}`);
      }
      return up;
    },
    remove: async () => {
      for (const pid of await findQemuProcesses(dir)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {}
        await waitForExit(pid, 10_000);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The lines of a markdown file's ```sh blocks, block by block (indented blocks too). */
export async function shellBlocks(file: string): Promise<string[][]> {
  const text = await readFile(join(REPO_ROOT, file), 'utf8');
  return [...text.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) =>
    m[1]!
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== ''),
  );
}
