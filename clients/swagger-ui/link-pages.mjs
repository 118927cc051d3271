// The link pages of Tessera's mails (/account/verify-email and
// /account/reset-password) driven as a person would, in the browser
// docs.mjs already started (one browser for every browser check).
//
// Steps: register an account and ask for a reset (plain fetch from node);
// read each mailed link from the service's log (the log delivery of
// TESSERA_SMTP_URL unset: each mail, its link included, is a log line);
// for each page: fetch it and open it in a page of its own without clicking,
// as a mail scanner would (neither may send anything but GETs of the page
// and its files), then open the link, press the button and read the message
// shown. Reset: mismatched passwords are refused in the page (nothing sent),
// a too-short password shows the server's reason and leaves the link usable,
// the right one shows success; then the new password logs in through the
// API (200) and the old one does not (401), and the used link shows
// "invalid, used or expired". A page opened without a token offers nothing.
//
// Environment (besides docs.mjs's):
//   TESSERA_LOG   the service's log file (scripts/gateway-e2e and swagger-ui-e2e export it)
//   MAIL_WAIT_MS  how long to wait for a mail's log line (default 20000)

import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

const PAGE_FILES = ['/account/account.js', '/account/account.css'];

// The newest link to `page` (reset-password or verify-email) in a log line
// that names `email`, waiting for the sender to write it.
async function mailedLink({ logPath, email, page, after, waitMs, step, fail }) {
  step(`wait for the ${page} mail to ${email} in the service log`);
  const pattern = new RegExp(`https?://[^\\s"'<>\\\\]+/account/${page}#token=[A-Za-z0-9_-]+`, 'g');
  const deadline = Date.now() + waitMs;
  for (;;) {
    let text = '';
    try {
      text = readFileSync(logPath, 'utf8');
    } catch (e) {
      fail(`cannot read the service log ${logPath}: ${e.message}`);
    }
    const links = text
      .split('\n')
      .filter((line) => line.includes(email))
      .flatMap((line) => line.match(pattern) || []);
    const fresh = links.filter((l) => !after.includes(l));
    if (fresh.length) return fresh[fresh.length - 1];
    if (Date.now() > deadline) {
      const mailLines = text.split('\n').filter((l) => /mail|smtp|outbox/i.test(l)).slice(-5);
      fail(
        `no ${page} link for ${email} in ${logPath} after ${waitMs} ms ` +
          `(the log delivery writes each mail with its link as a log line at INFO; ` +
          `is the mail sender running and RUST_LOG letting it through?); ` +
          `last mail-related lines:\n${mailLines.join('\n') || '(none)'}`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function api(base, path, body, timeout) {
  const resp = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(timeout),
  });
  return { status: resp.status, text: await resp.text() };
}

export async function linkPages({ context, base, origin, step, fail, watch, expectFailure, shot, stepTimeout }) {
  const logPath = process.env.TESSERA_LOG;
  if (!logPath) fail('set TESSERA_LOG to the service log file (scripts/gateway-e2e and swagger-ui-e2e do)');
  const waitMs = Number(process.env.MAIL_WAIT_MS || 20000);
  const suffix = randomBytes(6).toString('hex');
  const account = {
    username: `pages_e2e.${suffix}`,
    email: `pages-e2e-${suffix}@example.com`,
    password: `pages-e2e-old-${randomBytes(9).toString('base64url')}`,
  };
  const newPassword = `pages-e2e-new-${randomBytes(9).toString('base64url')}`;
  const mail = (page, after = []) =>
    mailedLink({ logPath, email: account.email, page, after, waitMs, step, fail });

  // A page of its own with the shared console and request watchers; `sent`
  // lists what this page requested.
  async function newPage() {
    const page = await context.newPage();
    watch(page);
    const sent = [];
    page.on('request', (r) => sent.push({ method: r.method(), url: r.url() }));
    return { page, sent };
  }

  // Only GETs of the page and its two files (and the browser's own favicon).
  function assertNothingSpent(sent, path, what) {
    const other = sent.filter((r) => {
      const u = new URL(r.url);
      return !(
        r.method === 'GET' &&
        u.origin === origin &&
        (u.pathname === path || PAGE_FILES.includes(u.pathname) || u.pathname === '/favicon.ico')
      );
    });
    if (other.length) {
      fail(`${what} sent more than the page's GETs:\n` + other.map((r) => `    ${r.method} ${r.url}`).join('\n'));
    }
    if (!sent.some((r) => new URL(r.url).pathname === '/account/account.js')) {
      fail(`${what}: the page did not load /account/account.js (${JSON.stringify(sent)})`);
    }
  }

  // What a mail scanner does with `link`: fetch it, and open it in a
  // browser without clicking anything.
  async function scan(link, path) {
    step(`scanner: fetch and open ${path} without clicking`);
    const r = await fetch(link, { signal: AbortSignal.timeout(stepTimeout) });
    const html = await r.text();
    if (r.status !== 200 || !html.includes('<form')) fail(`GET ${path}: ${r.status} ${html.slice(0, 200)}`);
    const { page, sent } = await newPage();
    const nav = await page.goto(link, { waitUntil: 'load' });
    if (!nav || nav.status() !== 200) fail(`open ${path}: ${nav && nav.status()}`);
    await page.locator('form').waitFor({ state: 'visible' });
    await page.waitForTimeout(500); // a script sending on load would have by now
    assertNothingSpent(sent, path, `opening ${path}`);
    await page.close();
  }

  // Opens `link` as the user; returns the page, its requests and its message.
  async function open(link, path) {
    step(`open the mailed link (${path}#token=…)`);
    const { page, sent } = await newPage();
    const nav = await page.goto(link, { waitUntil: 'load' });
    if (!nav || nav.status() !== 200) fail(`open ${path}: ${nav && nav.status()}`);
    await page.locator('form').waitFor({ state: 'visible' });
    if (page.url().includes('#') || page.url().includes('token')) {
      fail(`the token is still in the address bar: ${page.url()}`);
    }
    assertNothingSpent(sent, path, `opening ${path}`);
    return { page, sent, message: page.locator('#message') };
  }

  async function press(page, button, endpoint) {
    const [resp] = await Promise.all([
      page.waitForResponse((r) => r.url() === `${origin}${endpoint}`),
      page.getByRole('button', { name: button }).click(),
    ]);
    return resp;
  }

  async function expectMessage(message, re, what) {
    try {
      await message.filter({ hasText: re }).waitFor({ state: 'visible' });
    } catch {
      fail(`${what}: expected a message matching ${re}, the page shows ${JSON.stringify(await message.textContent())}`);
    }
    console.log(`   ${what}: "${(await message.textContent()).trim()}"`);
  }

  // ---- the account
  step(`register ${account.email} (POST /auth/register from node)`);
  let r = await api(base, '/auth/register', account, stepTimeout);
  if (r.status !== 201) fail(`POST /auth/register: expected 201, got ${r.status}: ${r.text}`);

  // ---- a page without a token
  step('open /account/reset-password without a token');
  {
    const { page, sent } = await newPage();
    await page.goto(`${base}/account/reset-password`, { waitUntil: 'load' });
    await page.locator('#no-token').waitFor({ state: 'visible' });
    if (await page.getByRole('button').count()) fail('a page without a token offers a button');
    assertNothingSpent(sent, '/account/reset-password', 'the page without a token');
    await page.close();
  }

  // ---- verify-email (the registration's mail); before the reset, which
  // ends every outstanding link of the account.
  const verifyLink = await mail('verify-email');
  if (new URL(verifyLink).origin !== origin) fail(`the link leads to ${verifyLink}, not ${origin}`);
  await scan(verifyLink, '/account/verify-email');
  {
    const { page, message } = await open(verifyLink, '/account/verify-email');
    step('press "Verify my address"');
    const resp = await press(page, 'Verify my address', '/auth/email/verify');
    if (resp.status() !== 200) fail(`POST /auth/email/verify: ${resp.status()} ${await resp.text()}`);
    await expectMessage(message, new RegExp(`${account.email.replace(/\./g, '\\.')} is verified`), 'verified');
    if (await page.getByRole('button', { name: 'Verify my address' }).isVisible()) {
      fail('the button is still offered after success');
    }
    await page.screenshot({ path: shot('verify-email'), fullPage: true });
    await page.close();
  }

  // ---- reset-password
  step(`ask for a reset (POST /auth/password/forgot from node)`);
  r = await api(base, '/auth/password/forgot', { email: account.email }, stepTimeout);
  if (r.status !== 202) fail(`POST /auth/password/forgot: expected 202, got ${r.status}: ${r.text}`);
  const resetLink = await mail('reset-password');
  if (new URL(resetLink).origin !== origin) fail(`the link leads to ${resetLink}, not ${origin}`);
  await scan(resetLink, '/account/reset-password');
  {
    const { page, sent, message } = await open(resetLink, '/account/reset-password');
    const password = page.getByLabel('New password', { exact: true });
    const again = page.getByLabel('New password again');
    for (const field of [password, again]) {
      if ((await field.getAttribute('autocomplete')) !== 'new-password') fail('autocomplete is not new-password');
    }

    step('two different passwords: refused in the page, nothing sent');
    const before = sent.length;
    await password.fill(newPassword);
    await again.fill(`${newPassword}x`);
    await page.getByRole('button', { name: 'Set new password' }).click();
    await expectMessage(message, /passwords differ/, 'mismatch');
    if (sent.slice(before).some((q) => q.method !== 'GET')) fail('a mismatch was sent to the service');

    step('a too-short password: the service says why (422), the link stays');
    expectFailure(`${origin}/auth/password/reset`);
    await password.fill('short');
    await again.fill('short');
    let resp = await press(page, 'Set new password', '/auth/password/reset');
    if (resp.status() !== 422) fail(`POST /auth/password/reset with "short": ${resp.status()}`);
    await expectMessage(message, /cannot be used: must be 8 to 128 characters/, 'weak password');

    step('the new password');
    await password.fill(newPassword);
    await again.fill(newPassword);
    resp = await press(page, 'Set new password', '/auth/password/reset');
    if (resp.status() !== 204) fail(`POST /auth/password/reset: ${resp.status()} ${await resp.text()}`);
    const body = resp.request().postDataJSON();
    if (!body || typeof body.token !== 'string' || body.new_password !== newPassword) {
      fail(`the page posted ${JSON.stringify(Object.keys(body || {}))}, expected {token, new_password}`);
    }
    if (!resetLink.endsWith(`#token=${body.token}`)) fail('the page posted another token than the link holds');
    await expectMessage(message, /^Your password was changed\. Log in with it\.$/, 'reset');
    if (await password.isVisible()) fail('the form is still offered after success');
    await page.screenshot({ path: shot('reset-password'), fullPage: true });
    await page.close();
  }

  step('log in with the new password (200) and the old one (401) through the API');
  r = await api(base, '/auth/login', { email: account.email, password: newPassword }, stepTimeout);
  if (r.status !== 200) fail(`login with the new password: ${r.status} ${r.text}`);
  r = await api(base, '/auth/login', { email: account.email, password: account.password }, stepTimeout);
  if (r.status !== 401) fail(`login with the old password: expected 401, got ${r.status} ${r.text}`);

  step('the used link again: "invalid, used or expired"');
  {
    const { page, message } = await open(resetLink, '/account/reset-password');
    await page.getByLabel('New password', { exact: true }).fill(`${newPassword}2`);
    await page.getByLabel('New password again').fill(`${newPassword}2`);
    const resp = await press(page, 'Set new password', '/auth/password/reset');
    if (resp.status() !== 400) fail(`the used link: expected 400, got ${resp.status()}`);
    await expectMessage(message, /^This link is invalid, used or expired; ask for a new one\.$/, 'used link');
    await page.close();
  }
}
