// The test app of scripts/gateway-e2e's browser phase, served by the gateway
// on Tessera's own origin. It holds no token: the access and refresh tokens
// live in HttpOnly cookies; the CSRF token is read from its readable cookie
// (the double submit) and sent as X-CSRF-Token on unsafe requests.
'use strict';

const CSRF_COOKIE = /(?:^|;\s*)(?:__Host-)?tessera-csrf=([^;]*)/;
let refreshes = 0;

function csrfToken() {
  const m = document.cookie.match(CSRF_COOKIE);
  return m ? decodeURIComponent(m[1]) : '';
}

function say(text) {
  document.getElementById('message').textContent = text;
}

async function call(method, path, body) {
  const init = { method, credentials: 'include', headers: {} };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const csrf = csrfToken();
  if (method !== 'GET' && csrf) init.headers['x-csrf-token'] = csrf;
  return fetch(path, init);
}

async function codeOf(resp) {
  try {
    return (await resp.clone().json()).code;
  } catch {
    return undefined;
  }
}

// A call that, when the access token is over, renews the session once
// (/auth/browser/refresh: the refresh cookie plus X-CSRF-Token) and retries.
// Over means 401 TokenMissing as well as TokenExpired: the access cookie's
// Max-Age is the token's lifetime, so the browser drops it at expiry and the
// next request carries none; TokenExpired only in the moment in between.
const RENEW_ON = ['TokenExpired', 'TokenMissing'];
async function api(method, path, body) {
  const first = await call(method, path, body);
  if (first.status !== 401) return first;
  const code = await codeOf(first);
  if (!RENEW_ON.includes(code) || !csrfToken()) return first;
  const renewed = await call('POST', '/auth/browser/refresh');
  if (renewed.status !== 200) return renewed;
  refreshes += 1;
  const counter = document.getElementById('refreshes');
  if (counter) {
    counter.textContent = String(refreshes);
    counter.dataset.reason = code;
  }
  return call(method, path, body);
}

// Where to go after login: a path on this origin only (no open redirect).
function returnTo() {
  const rd = new URLSearchParams(location.search).get('rd');
  return rd && rd.startsWith('/') && !rd.startsWith('//') && !rd.includes('\\') ? rd : '/web/app.html';
}

async function loginPage() {
  const form = document.getElementById('login');
  // Sent here by the gateway (a page load whose access cookie is gone) while
  // the session may still be alive: renew it silently and go back.
  if (csrfToken()) {
    form.hidden = true;
    const r = await call('POST', '/auth/browser/refresh');
    if (r.status === 200) {
      location.replace(returnTo());
      return;
    }
    form.hidden = false;
  }
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    say('logging in…');
    const r = await call('POST', '/auth/browser/login', {
      email: data.get('email'),
      password: data.get('password'),
    });
    if (r.status !== 200) {
      say(`login failed: ${r.status} ${(await codeOf(r)) || ''}`);
      return;
    }
    // For the test: the names of the answer's fields (never a value); the
    // page leaves before a test could read the answer itself.
    const answer = await r.json();
    console.info(`login answered: ${Object.keys(answer).sort().join(',')}`);
    location.assign(returnTo());
  });
}

async function showProfile() {
  const who = document.getElementById('who');
  const r = await api('GET', '/users/me');
  if (r.status === 401) {
    location.assign('/web/login.html?rd=/web/app.html');
    return;
  }
  if (r.status !== 200) {
    who.textContent = `error: ${r.status} ${(await codeOf(r)) || ''}`;
    return;
  }
  const me = await r.json();
  who.textContent = `Signed in as ${me.email}`;
  who.dataset.loadedAt = String(Date.now());
}

function appPage() {
  document.getElementById('reload').addEventListener('click', showProfile);
  document.getElementById('logout').addEventListener('click', async () => {
    const r = await api('POST', '/auth/browser/logout');
    say(r.status === 204 ? 'Logged out' : `logout failed: ${r.status} ${(await codeOf(r)) || ''}`);
  });
  showProfile();
}

if (document.body.dataset.page === 'login') loginPage();
else if (document.body.dataset.page === 'app') appPage();
