// Every browser check of the test command, in ONE start of Debian's Chromium
// through playwright-core (no browser of Playwright's own): Tessera's
// Swagger UI (/docs) driven as a person would, the mails' link pages
// (link-pages.mjs) and, with GATEWAY_BASE, browser sessions through the
// gateway (browser-sessions.mjs). scripts/gateway-e2e runs all three;
// scripts/swagger-ui-e2e the first two.
//
//   TESSERA_BASE=http://127.0.0.1:PORT [GATEWAY_BASE=... (see browser-sessions.mjs)] node docs.mjs
//
// Environment:
//   TESSERA_BASE  the running service for /docs and the link pages (required
//                 unless GATEWAY_BASE is set; then those two are skipped)
//   GATEWAY_BASE  and the other GATEWAY_* of browser-sessions.mjs: run the
//                 browser-session checks too, in a context of their own
//   CHROMIUM      the browser (default /usr/bin/chromium)
//   SCREENSHOT    where the full-page screenshot goes (default out/docs.png
//                 beside this file), with <name>-login.png and <name>-users-me.png
//                 (the two operations) beside it; on failure <name>-failure.png
//   STEP_TIMEOUT_MS  deadline of each step (default 15000)
//   TESSERA_LOG   the service's log file, where the log delivery writes the
//                 mails (link-pages.mjs reads the links from it)
//   Screenshots of the link pages after success: <name>-verify-email.png and
//   <name>-reset-password.png beside SCREENSHOT; of the browser sessions'
//   app page <name>-browser-session.png (<name>-browser-session-failure.png).
//
// Steps: register an account with a plain fetch (POST /auth/register), then in
// the browser: open /docs, check that the second factor's operations are
// listed (method and path), "Try it out" on POST /auth/login with the account's
// email and password, read access_token from the live response, paste it into
// "Authorize" (the accessToken bearer scheme), "Try it out" on GET /users/me,
// and expect 200 with the account's email. Every request the page made must
// have gone to TESSERA_BASE's origin (data: and blob: URLs aside): the page
// is self-contained, no CDN. Exits 1 with the failing step on any failure.
//
// Then, in the same browser, the link pages of the mails (link-pages.mjs:
// verify an address and reset a password through the mailed links; needs
// TESSERA_LOG, the service's log). A CSP violation or any other console
// error of any page fails the run, as does a request off the origin.

import { mkdirSync, rmSync } from 'node:fs';
import { dirname, join, parse } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';
import { linkPages } from './link-pages.mjs';
import { browserSessions } from './browser-sessions.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const base = process.env.TESSERA_BASE;
const gatewayBase = process.env.GATEWAY_BASE;
if (!base && !gatewayBase) {
  console.error('docs.mjs: set TESSERA_BASE (e.g. http://127.0.0.1:8080) and/or GATEWAY_BASE');
  process.exit(2);
}
const origin = base ? new URL(base).origin : null;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const screenshot = process.env.SCREENSHOT || join(here, 'out', 'docs.png');
const failureShot = (() => {
  const p = parse(screenshot);
  return join(p.dir, `${p.name}-failure${p.ext || '.png'}`);
})();
const partShot = (part) => {
  const p = parse(screenshot);
  return join(p.dir, `${p.name}-${part}${p.ext || '.png'}`);
};
const successShots = ['login', 'users-me', 'verify-email', 'reset-password', 'browser-session'].map(partShot);
const otherShots = ['browser-session-failure'].map(partShot);
const stepTimeout = Number(process.env.STEP_TIMEOUT_MS || 15000);

const t0 = Date.now();
let currentStep = 'start';
function step(name) {
  currentStep = name;
  console.log(`-- ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}
class Failure extends Error {}
function fail(message) {
  throw new Failure(message);
}

// ------------------------------------------------------------- the account
const suffix = randomBytes(6).toString('hex');
const account = {
  username: `ui_e2e.${suffix}`,
  email: `ui-e2e-${suffix}@example.com`,
  password: `ui-e2e-pw-${randomBytes(9).toString('base64url')}`,
};

async function register() {
  step(`register ${account.email} (POST /auth/register from node)`);
  const resp = await fetch(`${base}/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(account),
    signal: AbortSignal.timeout(stepTimeout),
  });
  const text = await resp.text();
  if (resp.status !== 201) {
    fail(`POST /auth/register: expected 201, got ${resp.status}: ${text}`);
  }
}

// ------------------------------------------------------------- the browser
const requests = []; // every request any page of the context made
const problems = []; // page errors and console errors (CSP violations among them)
// URLs whose 4xx a step provokes on purpose (Chromium logs each failed
// fetch as a console error).
const expectedFailures = new Set();

function watch(page) {
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const at = m.location() && m.location().url;
    // The browser asks for /favicon.ico by itself; the service has none.
    if (at === `${origin}/favicon.ico`) return;
    if (expectedFailures.has(at) && /^Failed to load resource: the server responded with a status of 4\d\d/.test(m.text())) {
      return;
    }
    problems.push(`console error: ${m.text()}${at ? ` (${at})` : ''}`);
  });
  page.on('websocket', (ws) => requests.push({ method: 'WEBSOCKET', url: ws.url() }));
}

function offOrigin() {
  return requests.filter((r) => {
    let u;
    try {
      u = new URL(r.url);
    } catch {
      return true;
    }
    if (u.protocol === 'data:' || u.protocol === 'blob:') return false;
    return u.origin !== origin;
  });
}

// The live response of an expanded operation: its status code and body text.
async function liveResponse(op) {
  const table = op.locator('.live-responses-table');
  await table.waitFor({ state: 'visible' });
  const status = (await table.locator('tbody td.response-col_status').first().innerText()).trim();
  const body = table.locator('tbody td.response-col_description .highlight-code pre').first();
  await body.waitFor({ state: 'visible' });
  return { status, body: (await body.textContent()) ?? '' };
}

// Expand an operation, press "Try it out"; returns the operation's block.
async function tryItOut(page, id, label) {
  step(`expand ${label} (#${id})`);
  const op = page.locator(`#${id}`);
  await op.waitFor({ state: 'visible' });
  await op.locator('.opblock-summary-control').click();
  const tryOut = op.locator('button.try-out__btn');
  await tryOut.waitFor({ state: 'visible' });
  step(`${label}: Try it out`);
  await tryOut.click();
  await op.locator('button.execute').waitFor({ state: 'visible' });
  return op;
}

async function execute(page, op, label, path) {
  step(`${label}: Execute`);
  const [resp] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${origin}${path}`),
    op.locator('button.execute').click(),
  ]);
  const live = await liveResponse(op);
  console.log(`   ${label}: ${resp.status()} on the wire, "${live.status.split('\n')[0]}" shown`);
  return { resp, live };
}

// The second factor's operations (API.md "Second factor (TOTP)"): each is
// listed under its tag with its method and path.
const secondFactorOperations = [
  ['Auth', 'enroll_totp', 'POST', '/auth/mfa/totp'],
  ['Auth', 'confirm_totp', 'POST', '/auth/mfa/totp/confirm'],
  ['Auth', 'delete_totp', 'DELETE', '/auth/mfa/totp'],
  ['Auth', 'regenerate_recovery_codes', 'POST', '/auth/mfa/recovery-codes'],
  ['Auth', 'verify_mfa', 'POST', '/auth/mfa/verify'],
  ['Auth', 'browser_verify_mfa', 'POST', '/auth/browser/mfa/verify'],
  ['Users', 'delete_user_mfa', 'DELETE', '/users/{id}/mfa'],
];

async function secondFactorListed(page) {
  step(`the second factor's ${secondFactorOperations.length} operations are listed`);
  for (const [tag, id, method, path] of secondFactorOperations) {
    const op = page.locator(`#operations-${tag}-${id}`);
    await op.waitFor({ state: 'visible' });
    const shownMethod = (await op.locator('.opblock-summary-method').first().innerText()).trim();
    const shownPath = await op.locator('.opblock-summary-path').first().getAttribute('data-path');
    if (shownMethod !== method || shownPath !== path) {
      fail(`#operations-${tag}-${id} shows ${shownMethod} ${shownPath}, expected ${method} ${path}`);
    }
  }
}

async function run(page) {
  step('open /docs');
  const nav = await page.goto(`${base}/docs`, { waitUntil: 'load' });
  if (!nav || nav.status() !== 200) fail(`GET /docs: expected 200, got ${nav && nav.status()}`);
  step('wait for Swagger UI to render');
  await page.locator('#ui .swagger-ui').first().waitFor({ state: 'attached' });
  await page.locator('#operations-Auth-login').waitFor({ state: 'visible' });
  await page.locator('#operations-Users-get_me').waitFor({ state: 'visible' });
  await secondFactorListed(page);

  // ---- POST /auth/login
  const login = await tryItOut(page, 'operations-Auth-login', 'POST /auth/login');
  step('POST /auth/login: request body');
  const textarea = login.locator('textarea.body-param__text');
  await textarea.waitFor({ state: 'visible' });
  await textarea.fill(JSON.stringify({ email: account.email, password: account.password }, null, 2));
  const { live: loginLive } = await execute(page, login, 'POST /auth/login', '/auth/login');
  if (!/^200\b/.test(loginLive.status)) {
    fail(`POST /auth/login shows code "${loginLive.status}", expected 200; body: ${loginLive.body}`);
  }
  let tokens;
  try {
    tokens = JSON.parse(loginLive.body);
  } catch (e) {
    fail(`POST /auth/login: the response body shown is not JSON (${e.message}): ${loginLive.body}`);
  }
  if (typeof tokens.access_token !== 'string' || tokens.access_token.split('.').length !== 3) {
    fail(`POST /auth/login: no JWT access_token in the body shown: ${loginLive.body}`);
  }
  console.log(`   access_token: ${tokens.access_token.slice(0, 16)}… (${tokens.access_token.length} chars)`);

  // ---- Authorize (accessToken)
  step('Authorize: open the dialog');
  await page.locator('.auth-wrapper button.authorize').first().click();
  const modal = page.locator('.dialog-ux .modal-ux');
  await modal.waitFor({ state: 'visible' });
  // Each scheme (accessToken, refreshToken) has its block in the dialog: a
  // heading <h4><code>NAME</code> (http, Bearer)</h4>, a Value input (the
  // inputs share one id) and its own Authorize and Close buttons. The focus
  // lands in refreshToken's input, so the field is picked by its heading.
  const accessBlock = modal
    .locator('.auth-container')
    .filter({ has: page.locator('xpath=.//h4/code[normalize-space()="accessToken"]') });
  if ((await accessBlock.count()) !== 1) {
    fail(`Authorize: expected one block for accessToken in the dialog, found ${await accessBlock.count()}`);
  }
  step('Authorize: fill accessToken');
  const input = accessBlock.locator('input');
  if ((await input.count()) !== 1) {
    fail(`Authorize: expected one input in accessToken's block, found ${await input.count()}`);
  }
  await input.fill(tokens.access_token);
  await accessBlock.locator('.auth-btn-wrapper button.authorize').click();
  await accessBlock.locator('h6', { hasText: 'Authorized' }).waitFor({ state: 'visible' });
  step('Authorize: close the dialog');
  await accessBlock.locator('.auth-btn-wrapper button.btn-done').click();
  await modal.waitFor({ state: 'hidden' });

  // ---- GET /users/me
  const me = await tryItOut(page, 'operations-Users-get_me', 'GET /users/me');
  const { resp: meResp, live: meLive } = await execute(page, me, 'GET /users/me', '/users/me');
  const sent = (await meResp.request().allHeaders()).authorization;
  if (sent !== `Bearer ${tokens.access_token}`) {
    fail(`GET /users/me: the browser sent Authorization "${sent}", expected the Bearer access token`);
  }
  if (!/^200\b/.test(meLive.status)) {
    fail(`GET /users/me shows code "${meLive.status}", expected 200; body: ${meLive.body}`);
  }
  let user;
  try {
    user = JSON.parse(meLive.body);
  } catch (e) {
    fail(`GET /users/me: the response body shown is not JSON (${e.message}): ${meLive.body}`);
  }
  if (user.email !== account.email) {
    fail(`GET /users/me shows email ${JSON.stringify(user.email)}, expected ${account.email}; body: ${meLive.body}`);
  }
  if (user.username !== account.username) {
    fail(`GET /users/me shows username ${JSON.stringify(user.username)}, expected ${account.username}`);
  }
  console.log(`   GET /users/me shows 200 and ${user.email} (${user.username}, role ${user.role})`);

  await me.scrollIntoViewIfNeeded();
  step(`screenshot ${screenshot}`);
  await page.screenshot({ path: screenshot, fullPage: true });
  // The full page is tall (every operation, each with a dozen documented
  // responses); these two show the operations without the documented responses.
  const style = '.responses-table:not(.live-responses-table) { display: none !important; }';
  await login.screenshot({ path: partShot('login'), style });
  await me.screenshot({ path: partShot('users-me'), style });
}

async function main() {
  mkdirSync(dirname(screenshot), { recursive: true });
  for (const f of [screenshot, failureShot, ...successShots, ...otherShots]) {
    rmSync(f, { force: true });
  }

  if (base) await register();

  step(`launch ${executablePath}`);
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    timeout: 30000,
    // Without the background-networking flags Chromium reaches for Google's
    // services, which this machine's closed network refuses.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  let page;
  let failure;
  const messages = [];
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    context.setDefaultTimeout(stepTimeout);
    context.on('request', (r) => requests.push({ method: r.method(), url: r.url() }));
    page = await context.newPage();
    watch(page);
    try {
      if (base) {
        await run(page);
        await linkPages({
          context,
          base,
          origin,
          step,
          fail,
          watch,
          expectFailure: (url) => expectedFailures.add(url),
          shot: partShot,
          stepTimeout,
        });
      }
      if (gatewayBase) {
        await browserSessions({ browser, step, fail, stepTimeout, shot: partShot });
      }
    } catch (e) {
      failure = e;
    }

    const off = offOrigin();
    if (failure) {
      const what = (failure instanceof Failure ? failure.message : failure.stack || String(failure))
        .replace(/\x1b\[[0-9;]*m/g, ''); // Playwright's call log comes coloured
      messages.push(`step "${currentStep}" failed: ${what}`);
    }
    if (off.length) {
      messages.push(
        `${off.length} request(s) left ${origin}:\n` +
          off.map((r) => `    ${r.method} ${r.url}`).join('\n'),
      );
    }
    if (problems.length) {
      messages.push(`the page reported errors:\n` + problems.map((p) => `    ${p}`).join('\n'));
    }
    console.log(`   ${requests.length} request(s) made by the page, ${off.length} off ${origin}`);
    if (messages.length) {
      try {
        await page.screenshot({ path: failureShot, fullPage: true, timeout: 10000 });
        messages.push(`screenshot at the failure: ${failureShot}`);
      } catch (shotError) {
        messages.push(`could not save the failure screenshot: ${shotError.message}`);
      }
    }
  } finally {
    await browser.close();
  }

  if (messages.length) {
    // A failed run leaves no success screenshot behind.
    for (const f of [screenshot, ...successShots]) rmSync(f, { force: true });
    for (const m of messages) console.error(`docs.mjs: FAIL: ${m}`);
    process.exit(1);
  }
  console.log(`docs.mjs: OK in ${((Date.now() - t0) / 1000).toFixed(1)} s; screenshot: ${screenshot}`);
}

main().catch((e) => {
  console.error(`docs.mjs: FAIL: step "${currentStep}": ${e instanceof Failure ? e.message : e.stack || e}`);
  process.exit(1);
});
