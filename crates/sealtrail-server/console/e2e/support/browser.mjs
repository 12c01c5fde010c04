// Headless Chromium for the console's tests: the machine's own Chromium (never a
// downloaded one), a context per viewport, sign-in, and screenshots.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { REPO_ROOT } from './sealtrail.mjs';

export const CHROMIUM = process.env.SEALTRAIL_TEST_CHROMIUM || '/usr/bin/chromium';
export const SCREENSHOT_DIR = process.env.SEALTRAIL_TEST_CONSOLE_SCREENSHOTS || join(REPO_ROOT, 'target/console-screenshots');

export const DESKTOP = { width: 1280, height: 800 };
const WAIT_MS = 10_000;
export const PHONE = { width: 390, height: 844 };

export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/**
 * A fresh browser context (its own cookies) and a page in it. Script errors on the page and
 * Content-Security-Policy violations are collected in `problems`: a test ends by checking
 * there are none.
 */
export async function openPage(browser, viewport = DESKTOP) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  const page = await context.newPage();
  // Every wait in these tests is for something that takes milliseconds; fail fast.
  page.setDefaultTimeout(WAIT_MS);
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    const text = message.text();
    if (message.type() === 'error' && !/Failed to load resource: the server responded with a status of (401|403|404)/.test(text)) {
      problems.push(`console error: ${text}`);
    }
  });
  return { context, page, problems };
}

/** Signs in through the login page and waits to land on `next` (default the overview). */
export async function signIn(page, baseUrl, apiKey, next = '/console/') {
  await page.goto(`${baseUrl}/console/login?next=${encodeURIComponent(next)}`);
  await page.getByLabel('API key').fill(apiKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((url) => `${url.pathname}${url.search}` === next);
}

/** A full-page screenshot named `<name>-<desktop|phone>.png` in the screenshot directory. */
export async function screenshot(page, name) {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const kind = page.viewportSize().width < 600 ? 'phone' : 'desktop';
  await page.screenshot({ path: join(SCREENSHOT_DIR, `${name}-${kind}.png`), fullPage: true });
}
