// The two link pages of Tessera's mails (/account/reset-password and
// /account/verify-email). Opening a page sends nothing: a mail scanner that
// follows the link spends nothing. The token is read from the fragment
// (#token=...), which no request line, Referer or proxy log carries, and is
// POSTed only when the user presses the button.
'use strict';

(function () {
  // Relative to the page, so a path prefix in TESSERA_PUBLIC_URL still works.
  var ENDPOINTS = {
    'reset-password': '../auth/password/reset',
    'verify-email': '../auth/email/verify',
  };
  var GENERIC = 'Something went wrong; nothing was changed. Try again in a moment.';
  var LINK_INVALID = 'This link is invalid, used or expired; ask for a new one.';

  function tokenFromFragment() {
    var hash = window.location.hash.replace(/^#/, '');
    var token = new URLSearchParams(hash).get('token');
    if (hash) {
      // Out of the address bar, history and screenshots; kept in memory only.
      window.history.replaceState(null, '', window.location.pathname + window.location.search);
    }
    return token && token.trim() ? token.trim() : null;
  }

  function say(kind, text) {
    var message = document.getElementById('message');
    message.className = kind;
    message.textContent = text;
  }

  function retryAfter(response) {
    var seconds = parseInt(response.headers.get('Retry-After') || '', 10);
    return seconds > 0 ? seconds : 60;
  }

  // POST a JSON body; resolves to {response, body} (body null unless JSON).
  function post(url, payload) {
    return fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(payload),
      credentials: 'omit',
      cache: 'no-store',
      referrerPolicy: 'no-referrer',
    }).then(function (response) {
      return response.text().then(function (text) {
        var body = null;
        try {
          body = text ? JSON.parse(text) : null;
        } catch (e) {
          body = null;
        }
        return { response: response, body: body };
      });
    });
  }

  // The messages every page shares; null when the page must decide.
  function commonError(response, body) {
    var code = body && body.code;
    if (code === 'LinkInvalid') return LINK_INVALID;
    if (response.status === 429) {
      return 'Too many attempts; try again in ' + retryAfter(response) + ' seconds.';
    }
    return null;
  }

  function busy(form, on) {
    var controls = form.querySelectorAll('button, input');
    for (var i = 0; i < controls.length; i++) controls[i].disabled = on;
  }

  function resetPage(form, token) {
    var password = document.getElementById('new-password');
    var confirm = document.getElementById('confirm-password');
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      if (!password.value) {
        say('error', 'Enter the new password.');
        password.focus();
        return;
      }
      if (password.value !== confirm.value) {
        say('error', 'The two passwords differ; type the same password twice.');
        confirm.focus();
        return;
      }
      busy(form, true);
      say('', 'Setting the new password…');
      post(ENDPOINTS['reset-password'], { token: token, new_password: password.value })
        .then(function (r) {
          if (r.response.status === 204) {
            password.value = '';
            confirm.value = '';
            form.hidden = true;
            say('ok', 'Your password was changed. Log in with it.');
            return;
          }
          busy(form, false);
          var common = commonError(r.response, r.body);
          if (common) {
            say('error', common);
          } else if (r.response.status === 422 && r.body && r.body.fields && r.body.fields.new_password) {
            say('error', 'This password cannot be used: ' + r.body.fields.new_password);
            password.focus();
          } else {
            say('error', GENERIC);
          }
        })
        .catch(function () {
          busy(form, false);
          say('error', 'The service could not be reached; nothing was changed. Check your connection and try again.');
        });
    });
  }

  function verifyPage(form, token) {
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      busy(form, true);
      say('', 'Verifying your address…');
      post(ENDPOINTS['verify-email'], { token: token })
        .then(function (r) {
          if (r.response.status === 200 && r.body && typeof r.body.email === 'string') {
            form.hidden = true;
            say('ok', 'Your address ' + r.body.email + ' is verified.');
            return;
          }
          busy(form, false);
          var common = commonError(r.response, r.body);
          if (common) {
            say('error', common);
          } else if (r.response.status === 409) {
            say('error', 'This address now belongs to another account, so it cannot be confirmed for yours.');
          } else {
            say('error', GENERIC);
          }
        })
        .catch(function () {
          busy(form, false);
          say('error', 'The service could not be reached; nothing was changed. Check your connection and try again.');
        });
    });
  }

  function start() {
    var page = document.body.getAttribute('data-page');
    var form = document.querySelector('form');
    var token = tokenFromFragment();
    if (!form || !ENDPOINTS[page]) return;
    if (!token) {
      document.getElementById('no-token').hidden = false;
      return;
    }
    form.hidden = false;
    if (page === 'reset-password') resetPage(form, token);
    else verifyPage(form, token);
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
