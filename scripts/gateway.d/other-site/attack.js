// A page on another origin (scripts/gateway-e2e serves this directory on
// 127.0.0.2, another site, and on 127.0.0.1 with another port, the same site
// as the gateway) trying to end the visitor's sessions: a credentialed
// fetch POST to the gateway's /auth/logout-all, the same with the CSRF
// token when the page can read it (cookies are not separated by port), then
// the classic auto-submitted form POST. It reports what its scripts could
// see on the console ("attack: {...}") before the form navigates away.
// The target (the gateway's origin) comes in the query: ?target=http://...
'use strict';

(async () => {
  const target = new URLSearchParams(location.search).get('target');
  const url = `${target}/auth/logout-all`;
  const seen = {};
  try {
    const r = await fetch(url, { method: 'POST', credentials: 'include' });
    seen.fetch = `readable ${r.status}`;
  } catch (e) {
    seen.fetch = `blocked (${e.name})`;
  }
  const m = document.cookie.match(/(?:^|;\s*)(?:__Host-)?tessera-csrf=([^;]*)/);
  seen.csrfCookieVisible = Boolean(m);
  try {
    const r = await fetch(url, {
      method: 'POST',
      credentials: 'include',
      headers: { 'X-CSRF-Token': m ? decodeURIComponent(m[1]) : 'guess' },
    });
    seen.fetchWithToken = `readable ${r.status}`;
  } catch (e) {
    seen.fetchWithToken = `blocked (${e.name})`;
  }
  console.log(`attack: ${JSON.stringify(seen)}`);
  const form = document.getElementById('csrf');
  form.action = url;
  form.submit();
})();
