import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { ensurePortalBuilt } from '../app/ensure-portal-built.ts';
import { type Embedded, startEmbedded } from '../app/start-embedded.ts';
import { SERVER_PORTS } from '../cli/commands/host-command.ts';

export const CHROMIUM = process.env.HAVEN_CHROMIUM ?? '/usr/bin/chromium';
/** Screenshots land here; look at them after a run. */
export const SCREENSHOT_DIR = process.env.HAVEN_SCREENSHOTS ?? join(tmpdir(), 'haven-portal-screenshots');

let building: Promise<void> | null = null;

/** Builds the portal into portal/dist, as `haven up` does when its sources changed (once per test process). */
export function buildPortal(): Promise<void> {
  building ??= ensurePortalBuilt().then((build) => {
    if (build.state === 'unavailable') throw new Error(`the portal did not build: ${build.reason}`);
  });
  return building;
}

export interface PortalFixture {
  haven: Embedded;
  url: string;
  adminToken: string;
  browser: BrowserContext;
  /** Requests the pages made to anything but the vault (must stay empty). */
  foreignRequests: string[];
  /** Uncaught errors in the pages. */
  pageErrors: string[];
  api<T>(method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; body: T }>;
  newPage(options?: { token?: string; width?: number; height?: number }): Promise<Page>;
  screenshot(page: Page, name: string): Promise<string>;
  stop(): Promise<void>;
}

export interface PortalFixtureOptions {
  /** Both hosts drive libvirt at this URI (`haven up --libvirt`); default the built-in QEMU driver. */
  libvirt?: { uri: string };
  /** Offer the demo machine; default true. */
  demo?: boolean;
  /** The primary host serves physical servers as `haven up`'s does (127.0.0.1, free ports for taken ones); default true. */
  servers?: boolean;
}

/** A real `haven up` (vault and two local hosts, in process) on a free port, and a fresh Chromium. */
export async function startPortalFixture(options: PortalFixtureOptions = {}): Promise<PortalFixture> {
  const dataDir = await mkdtemp(join(tmpdir(), 'haven-portal-'));
  const profile = await mkdtemp(join(tmpdir(), 'haven-chromium-'));
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  // The portal tests register machines with images under /tmp (never attached).
  const haven = await startEmbedded({
    dataDir,
    port: 0,
    storageFolders: ['/tmp'],
    ...(options.libvirt ? { libvirt: options.libvirt } : {}),
    ...(options.demo === false ? { demo: false } : {}),
    ...(options.servers === false
      ? {}
      : { serverListen: { listen: { host: '127.0.0.1', ...SERVER_PORTS }, freePortWhenTaken: true } }),
  });
  const url = haven.vault.url;
  let browser: BrowserContext;
  try {
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1280, height: 800 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
  } catch (error) {
    await haven.stop();
    throw error;
  }
  const foreignRequests: string[] = [];
  const pageErrors: string[] = [];
  browser.on('request', (request) => {
    const target = request.url();
    if (!target.startsWith(`${url}/`) && !target.startsWith('data:')) foreignRequests.push(target);
  });
  browser.on('weberror', (error) => pageErrors.push(String(error.error())));

  const api: PortalFixture['api'] = async (method, path, body, token = haven.adminToken) => {
    const response = await fetch(`${url}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await response.text();
    return { status: response.status, body: (text ? JSON.parse(text) : null) as never };
  };

  return {
    haven,
    url,
    adminToken: haven.adminToken,
    browser,
    foreignRequests,
    pageErrors,
    api,
    async newPage(options = {}) {
      const page = await browser.newPage();
      if (options.width) await page.setViewportSize({ width: options.width, height: options.height ?? 800 });
      // Signed in already: the token is where the sign-in form leaves it (this tab's sessionStorage).
      if (options.token) {
        await page.addInitScript((token) => sessionStorage.setItem('haven.token', token), options.token);
      }
      return page;
    },
    async screenshot(page, name) {
      const file = join(SCREENSHOT_DIR, `${name}.png`);
      await page.screenshot({ path: file, fullPage: true });
      return file;
    },
    async stop() {
      await browser.close().catch(() => {});
      await haven.stop();
      await rm(dataDir, { recursive: true, force: true });
      await rm(profile, { recursive: true, force: true });
    },
  };
}

const PHONE = { width: 390, height: 844 };

/** A page that records its console errors, so each test can say it had none. */
export async function watchedPage(f: PortalFixture, token: string, consoleErrors: string[]): Promise<Page> {
  const page = await f.newPage({ token });
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(`${page.url()}: ${message.text()}`);
  });
  return page;
}

/** Both sizes the pages are kept at: 1280x800 and a phone; at phone width nothing scrolls sideways. */
export async function screenshots(f: PortalFixture, page: Page, name: string): Promise<void> {
  await page.setViewportSize({ width: 1280, height: 800 });
  await f.screenshot(page, `${name}-1280`);
  await page.setViewportSize(PHONE);
  await f.screenshot(page, `${name}-phone`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `${name} at phone width scrolls sideways by ${overflow}px`);
  await page.setViewportSize({ width: 1280, height: 800 });
}
