// Browser sessions (API.md "Browser sessions (cookies)") through the gateway
// of scripts/gateway-e2e, in the browser docs.mjs already started (one
// browser for every browser check).
//
// The gateway (nginx) serves, on one origin, Tessera's API (two replicas with
// TESSERA_COOKIES=true and a short TESSERA_ACCESS_TTL), the test app
// (scripts/gateway.d/web/: login.html, app.html, app.js; it holds no token)
// and /private/, the upstream application behind auth_request by cookie,
// whose 401 redirects to the app's login page. Steps, in a fresh context:
//   - /private/ without a session: 302 to /web/login.html?rd=/private/, the
//     upstream not reached;
//   - log in through the form (fetch with credentials to
//     /auth/browser/login): no token in the answer, back at /private/ where
//     the upstream got x-auth-user-id; document.cookie shows only the CSRF
//     cookie; the browser holds the access and refresh cookies HttpOnly;
//   - app.html shows the account (GET /users/me by cookie); once the access
//     token expired, "Reload profile" gets 401 (TokenMissing: the browser
//     dropped the access cookie, whose Max-Age is the token's lifetime; or
//     TokenExpired), refreshes (/auth/browser/refresh with X-CSRF-Token) and
//     carries on (200);
//   - pages of another site (127.0.0.2) and of the same site on another
//     port (scripts/gateway.d/other-site/attack.js) POST to
//     /auth/logout-all by fetch and by an auto-submitted form: the cross-site
//     requests carry no cookie (401), the same-site ones are refused 403
//     CsrfFailed, the one with the token never gets past CORS's preflight
//     (the gateway's access log says so); the session still works;
//   - once the access token expired again, /private/ redirects to the login
//     page, which renews the session silently and returns to /private/;
//   - "Log out" (/auth/browser/logout): the cookies are gone and /private/
//     redirects to the login page again, which shows its form.
// No request of the app's pages may leave the gateway's origin, and they
// may log no console error but the 401s the steps cause on purpose.
//
// Environment (scripts/gateway-e2e sets them):
//   GATEWAY_BASE        the gateway, e.g. http://127.0.0.1:PORT
//   GATEWAY_OTHER_SITE  the other site's server (http://127.0.0.2:PORT)
//   GATEWAY_SAME_SITE   the same site's other server (http://127.0.0.1:PORT)
//   GATEWAY_UPSTREAM    the upstream application directly (its /__hits)
//   GATEWAY_ACCESS_LOG  nginx's access log (format `gateway`)
//   GATEWAY_ACCESS_TTL  the replicas' TESSERA_ACCESS_TTL in seconds

import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

const ACCESS = '__Host-tessera-access';
const REFRESH = '__Secure-tessera-refresh';
const CSRF = '__Host-tessera-csrf';

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`browser-sessions.mjs: set ${name} (scripts/gateway-e2e does)`);
  return v;
}

export async function browserSessions({ browser, step, fail, stepTimeout, shot }) {
  const gw = new URL(env('GATEWAY_BASE')).origin;
  const otherSite = new URL(env('GATEWAY_OTHER_SITE')).origin;
  const sameSite = new URL(env('GATEWAY_SAME_SITE')).origin;
  const upstream = env('GATEWAY_UPSTREAM');
  const accessLog = env('GATEWAY_ACCESS_LOG');
  const ttlMs = Number(env('GATEWAY_ACCESS_TTL')) * 1000;

  const suffix = randomBytes(6).toString('hex');
  const account = {
    username: `browser_e2e.${suffix}`,
    email: `browser-e2e-${suffix}@example.com`,
    password: `browser-e2e-pw-${randomBytes(9).toString('base64url')}`,
  };

  async function hits() {
    const r = await fetch(`${upstream}/__hits`, { signal: AbortSignal.timeout(stepTimeout) });
    return (await r.json()).hits;
  }

  step(`browser sessions: register ${account.email} through the gateway (node)`);
  const reg = await fetch(`${gw}/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(account),
    signal: AbortSignal.timeout(stepTimeout),
  });
  const regText = await reg.text();
  if (reg.status !== 201) fail(`POST /auth/register through the gateway: ${reg.status} ${regText}`);
  const userId = JSON.parse(regText).id;

  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  context.setDefaultTimeout(stepTimeout);
  const appRequests = []; // every request of the app's pages
  const problems = [];
  // The 401s the steps provoke (an expired token; /private/ by redirect is
  // no console error).
  const expected401 = new Set([`${gw}/users/me`, `${gw}/auth/browser/logout`]);
  const page = await context.newPage();
  page.on('request', (r) =>
    appRequests.push({ method: r.method(), url: r.url(), headers: r.headers() }),
  );
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  const infos = [];
  page.on('console', (m) => {
    if (m.type() === 'info') infos.push(m.text());
    if (m.type() !== 'error') return;
    const at = m.location() && m.location().url;
    if (at === `${gw}/favicon.ico`) return;
    if (expected401.has(at) && /status of 401/.test(m.text())) return;
    problems.push(`console error: ${m.text()}${at ? ` (${at})` : ''}`);
  });
  // Each API exchange of the app page: method, path, status, CSRF header sent.
  const exchanges = [];
  page.on('response', (r) => {
    const u = new URL(r.url());
    if (u.origin !== gw || u.pathname.startsWith('/web/')) return;
    const req = r.request();
    exchanges.push({
      method: req.method(),
      path: u.pathname,
      status: r.status(),
      csrf: req.headers()['x-csrf-token'],
    });
  });
  const documentCookie = () => page.evaluate(() => document.cookie);
  const cookieNames = async () =>
    (await documentCookie())
      .split(';')
      .map((c) => c.trim().split('=')[0])
      .filter(Boolean)
      .sort();

  // At the login page's form after a redirect from /private/; `from`: the
  // exchanges before the navigation (without a session the page must not
  // even try a refresh).
  async function expectLoginPage(what, from) {
    const want = `${gw}/web/login.html?rd=/private/`;
    await page.waitForURL((u) => u.href === want).catch(() => fail(`${what}: at ${page.url()}, expected ${want}`));
    await page.locator('form#login').waitFor({ state: 'visible' });
    if (exchanges.slice(from).some((x) => x.path === '/auth/browser/refresh')) {
      fail(`${what}: the login page tried /auth/browser/refresh without a session`);
    }
  }

  // The upstream's JSON as /private/ shows it, for this user.
  async function privatePage(what) {
    let seen;
    try {
      seen = JSON.parse(await page.locator('body').textContent());
    } catch (e) {
      fail(`${what}: /private/ does not show the upstream's JSON: ${await page.content()}`);
    }
    if (seen.app !== 'upstream' || seen.path !== '/private/') fail(`${what}: /private/ shows ${JSON.stringify(seen)}`);
    if (seen.headers['x-auth-user-id'] !== userId) {
      fail(`${what}: the upstream got x-auth-user-id ${JSON.stringify(seen.headers['x-auth-user-id'])}, expected ${userId}`);
    }
  }

  // Waits until the browser dropped the access cookie (its Max-Age is the
  // token's lifetime), within the lifetime and a margin.
  async function accessExpired(what) {
    const t = Date.now();
    for (;;) {
      const names = (await context.cookies(gw)).map((c) => c.name);
      if (!names.includes(ACCESS)) break;
      if (Date.now() - t > ttlMs + 5000) fail(`${what}: the browser still holds ${ACCESS} after ${ttlMs + 5000} ms`);
      await page.waitForTimeout(100);
    }
    console.log(`   the browser dropped ${ACCESS} after ${((Date.now() - t) / 1000).toFixed(1)} s of waiting`);
  }

  async function reloadProfile(what) {
    const before = await page.locator('#who').getAttribute('data-loaded-at');
    const from = exchanges.length;
    await page.getByRole('button', { name: 'Reload profile' }).click();
    await page
      .waitForFunction((b) => {
        const who = document.getElementById('who');
        return who.dataset.loadedAt && who.dataset.loadedAt !== b;
      }, before)
      .catch(async () =>
        fail(`${what}: the profile did not reload; the page shows ${JSON.stringify(await page.locator('#who').textContent())}; exchanges ${JSON.stringify(exchanges.slice(from))}`),
      );
    const who = (await page.locator('#who').textContent()).trim();
    if (who !== `Signed in as ${account.email}`) fail(`${what}: the page shows ${JSON.stringify(who)}`);
    return exchanges.slice(from);
  }

  try {
    // ---- a page load without a session
    let hitsBefore = await hits();
    step('browser sessions: /private/ without a session redirects to the login page');
    let from = exchanges.length;
    await page.goto(`${gw}/private/`, { waitUntil: 'load' });
    await expectLoginPage('/private/ without a session', from);
    if ((await documentCookie()) !== '') fail(`cookies before login: ${await documentCookie()}`);
    if ((await hits()) !== hitsBefore) fail('the upstream was reached without a session');

    // ---- login through the app's form
    step('browser sessions: log in through the app (fetch to /auth/browser/login, credentials included)');
    await page.getByLabel('Email').fill(account.email);
    await page.getByLabel('Password').fill(account.password);
    const [loginResp] = await Promise.all([
      page.waitForResponse((r) => r.url() === `${gw}/auth/browser/login`),
      page.getByRole('button', { name: 'Log in' }).click(),
    ]);
    if (loginResp.status() !== 200) {
      fail(`POST /auth/browser/login: ${loginResp.status()} (the page says ${JSON.stringify(await page.locator('#message').textContent())})`);
    }

    step('browser sessions: back at /private/, through nginx with the access cookie');
    await page.waitForURL((u) => u.href === `${gw}/private/`).catch(() => fail(`after login at ${page.url()}, expected ${gw}/private/`));
    // What app.js logged of the answer (field names only).
    const keys = infos.filter((t) => t.startsWith('login answered: ')).map((t) => t.slice(16));
    if (keys.join() !== 'csrf_token,expires_in,refresh_expires_in,user_id') {
      fail(`POST /auth/browser/login answered the fields ${JSON.stringify(keys)}; expected no token, only csrf_token, expires_in, refresh_expires_in, user_id`);
    }
    await privatePage('after login');
    if ((await hits()) !== hitsBefore + 1) fail('the upstream was not reached exactly once by the page load');
    console.log(`   /private/ through nginx: the upstream got x-auth-user-id ${userId}`);

    step('browser sessions: scripts see only the CSRF cookie; the browser holds all three');
    const names = await cookieNames();
    if (names.join(',') !== CSRF) fail(`document.cookie shows ${JSON.stringify(names)}, expected only ${CSRF}`);
    const jar = Object.fromEntries((await context.cookies(gw)).map((c) => [c.name, c]));
    if (!jar[ACCESS] || !jar[ACCESS].httpOnly || jar[ACCESS].sameSite !== 'Lax' || jar[ACCESS].path !== '/') {
      fail(`the access cookie as stored: ${JSON.stringify(jar[ACCESS])}`);
    }
    if (!jar[CSRF] || jar[CSRF].httpOnly || !jar[CSRF].value) {
      fail(`the CSRF cookie as stored: ${JSON.stringify(jar[CSRF])}`);
    }
    const csrfToken = jar[CSRF].value;
    const refreshJar = Object.fromEntries(
      (await context.cookies(`${gw}/auth/browser/refresh`)).map((c) => [c.name, c]),
    );
    const refresh = refreshJar[REFRESH];
    if (!refresh || !refresh.httpOnly || refresh.sameSite !== 'Strict' || refresh.path !== '/auth/browser') {
      fail(`the refresh cookie as stored: ${JSON.stringify(refresh)}`);
    }
    const firstAccess = jar[ACCESS].value;

    // ---- the app page: /users/me by cookie, then after expiry
    step('browser sessions: app.html shows the account (GET /users/me by cookie)');
    await page.goto(`${gw}/web/app.html`, { waitUntil: 'load' });
    await page.locator('#who', { hasText: `Signed in as ${account.email}` }).waitFor({ state: 'visible' })
      .catch(async () => fail(`app.html shows ${JSON.stringify(await page.locator('#who').textContent())}`));

    step('browser sessions: wait for the access token to expire');
    await accessExpired('the first access token');
    step('browser sessions: "Reload profile": 401, refresh with X-CSRF-Token, 200');
    const refreshesBefore = Number(await page.locator('#refreshes').textContent());
    const flow = await reloadProfile('after expiry');
    const shape = flow.map((x) => `${x.method} ${x.path} ${x.status}`).join(', ');
    if (shape !== 'GET /users/me 401, POST /auth/browser/refresh 200, GET /users/me 200') {
      fail(`after expiry the page exchanged: ${shape}`);
    }
    if (flow[1].csrf !== csrfToken) fail(`the refresh sent X-CSRF-Token ${flow[1].csrf}, not the session's`);
    if (Number(await page.locator('#refreshes').textContent()) !== refreshesBefore + 1) fail('the refresh was not counted');
    const reason = await page.locator('#refreshes').getAttribute('data-reason');
    if (!['TokenMissing', 'TokenExpired'].includes(reason)) fail(`the first 401 after expiry was ${reason}`);
    const after = Object.fromEntries((await context.cookies(gw)).map((c) => [c.name, c.value]));
    if (!after[ACCESS] || after[ACCESS] === firstAccess) fail('the refresh did not set a new access cookie');
    if (after[CSRF] !== csrfToken) fail('the CSRF cookie changed on refresh');
    console.log(`   ${shape} (the first 401: ${reason}${reason === 'TokenMissing' ? ', the browser had dropped the expired access cookie' : ''})`);

    // ---- another site, and the same site on another port
    const logLines = () =>
      readFileSync(accessLog, 'utf8')
        .split('\n')
        .filter((l) => l.includes('"POST /auth/logout-all '));
    const logBefore = logLines().length;
    const attacks = [
      { site: otherSite, what: 'another site', status: 401, cookie: 'no' },
      { site: sameSite, what: 'the same site, another origin', status: 403, cookie: 'yes', code: 'CsrfFailed' },
    ];
    for (const a of attacks) {
      step(`browser sessions: ${a.what} (${a.site}) POSTs to /auth/logout-all (fetch, form)`);
      const evil = await context.newPage();
      const said = [];
      evil.on('console', (m) => {
        if (m.text().startsWith('attack: ')) said.push(JSON.parse(m.text().slice(8)));
      });
      await evil.goto(`${a.site}/attack.html?target=${encodeURIComponent(gw)}`, { waitUntil: 'load' });
      await evil.waitForURL((u) => u.href === `${gw}/auth/logout-all`, { waitUntil: 'load' })
        .catch(() => fail(`${a.what}: the form did not navigate to ${gw}/auth/logout-all (at ${evil.url()})`));
      const shown = (await evil.locator('body').textContent()).trim();
      if (said.length !== 1) fail(`${a.what}: the page reported ${JSON.stringify(said)}`);
      const s = said[0];
      if (!s.fetch.startsWith('blocked') || !s.fetchWithToken.startsWith('blocked')) {
        fail(`${a.what}: a script read a cross-origin answer: ${JSON.stringify(s)}`);
      }
      console.log(`   ${a.what}: scripts saw ${JSON.stringify(s)}; the form's answer: ${shown.slice(0, 120)}`);
      if (a.code && !shown.includes(`"${a.code}"`)) fail(`${a.what}: the form's answer is ${shown}, expected ${a.code}`);
      await evil.close();
    }
    step('browser sessions: the gateway\'s access log of those POSTs');
    const posts = logLines().slice(logBefore);
    const parsed = posts.map((l) => {
      const m = l.match(/" (\d+) .* origin="([^"]*)" cookie=(\w+) csrf=(\w+)/);
      return m && { status: Number(m[1]), origin: m[2], cookie: m[3], csrf: m[4] };
    });
    const want = attacks.flatMap((a) => [0, 1].map(() => `${a.status} ${a.site} cookie=${a.cookie} csrf=no`)).sort();
    const got = parsed.map((p) => p && `${p.status} ${p.origin} cookie=${p.cookie} csrf=${p.csrf}`).sort();
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      fail(`POST /auth/logout-all at the gateway:\n    ${got.join('\n    ')}\nexpected (fetch and form from each; the request with the token stopped at the preflight):\n    ${want.join('\n    ')}`);
    }
    for (const g of got) console.log(`   access log: POST /auth/logout-all ${g}`);

    step('browser sessions: the session still works');
    const still = await reloadProfile('after the other pages');
    const last = still[still.length - 1];
    if (!last || last.path !== '/users/me' || last.status !== 200) fail(`after the other pages: ${JSON.stringify(still)}`);

    // ---- a page load after expiry: the login page renews silently
    step('browser sessions: wait for the access token to expire again');
    await accessExpired('the refreshed access token');
    step('browser sessions: /private/ after expiry: login page, silent refresh, back at /private/');
    hitsBefore = await hits();
    const nav = [];
    const onNav = (f) => f === page.mainFrame() && nav.push(new URL(f.url()).pathname);
    page.on('framenavigated', onNav);
    const from2 = exchanges.length;
    await page.goto(`${gw}/private/`, { waitUntil: 'load' });
    // Back at /private/ after the login page (the second navigation).
    for (const end = Date.now() + stepTimeout; !(nav.length >= 2 && page.url() === `${gw}/private/`); ) {
      if (Date.now() > end) {
        fail(`/private/ after expiry: at ${page.url()} (navigations ${JSON.stringify(nav)}; exchanges ${JSON.stringify(exchanges.slice(from2))})`);
      }
      await page.waitForTimeout(50);
    }
    await page.waitForLoadState('load');
    page.off('framenavigated', onNav);
    await privatePage('after expiry');
    const renew = exchanges.slice(from2).filter((x) => x.path === '/auth/browser/refresh');
    if (renew.length !== 1 || renew[0].status !== 200 || renew[0].csrf !== csrfToken) {
      fail(`/private/ after expiry: the login page's refresh: ${JSON.stringify(renew)}`);
    }
    if (nav.join(' ') !== '/web/login.html /private/') fail(`/private/ after expiry: the page went ${JSON.stringify(nav)}`);
    if ((await hits()) !== hitsBefore + 1) fail('/private/ after expiry: the upstream was not reached exactly once');
    console.log(`   /private/ -> 302 /web/login.html -> POST /auth/browser/refresh 200 -> /private/ (x-auth-user-id ${userId})`);
    await page.goto(`${gw}/web/app.html`, { waitUntil: 'load' });
    await page.locator('#who', { hasText: `Signed in as ${account.email}` }).waitFor({ state: 'visible' });

    // ---- logout
    step('browser sessions: "Log out" (/auth/browser/logout with X-CSRF-Token)');
    from = exchanges.length;
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.locator('#message', { hasText: /^Logged out$/ }).waitFor({ state: 'visible' })
      .catch(async () => fail(`logout: the page shows ${JSON.stringify(await page.locator('#message').textContent())}; ${JSON.stringify(exchanges.slice(from))}`));
    const out = exchanges.slice(from).filter((x) => x.path === '/auth/browser/logout');
    if (!out.length || out[out.length - 1].status !== 204 || out[out.length - 1].csrf !== csrfToken) {
      fail(`logout exchanges: ${JSON.stringify(exchanges.slice(from))}`);
    }
    if ((await documentCookie()) !== '') fail(`document.cookie after logout: ${await documentCookie()}`);
    const left = (await context.cookies([gw, `${gw}/auth/browser/refresh`])).map((c) => c.name);
    if (left.length) fail(`the browser still holds ${left.join(', ')} after logout`);
    await page.screenshot({ path: shot('browser-session'), fullPage: true });

    step('browser sessions: /private/ after logout redirects to the login page');
    hitsBefore = await hits();
    from = exchanges.length;
    await page.goto(`${gw}/private/`, { waitUntil: 'load' });
    await expectLoginPage('/private/ after logout', from);
    if ((await hits()) !== hitsBefore) fail('the upstream was reached after logout');

    const off = appRequests.filter((r) => !/^(data|blob):/.test(r.url) && new URL(r.url).origin !== gw);
    if (off.length) {
      fail(`${off.length} request(s) of the app's pages left ${gw}:\n` + off.map((r) => `    ${r.method} ${r.url}`).join('\n'));
    }
    if (problems.length) fail(`the app's pages reported errors:\n` + problems.map((p) => `    ${p}`).join('\n'));
    console.log(`   ${appRequests.length} request(s) by the app's pages, all to ${gw}`);
  } catch (e) {
    await page.screenshot({ path: shot('browser-session-failure'), fullPage: true, timeout: 10000 }).catch(() => {});
    throw e;
  } finally {
    await context.close();
  }
}
