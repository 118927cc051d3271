"""Schemathesis hooks for scripts/schemathesis (SCHEMATHESIS_HOOKS).

Authentication. Every test case gets credentials that are valid when the
request is sent:
- A "main" admin account (registered by this hook and promoted by the root
  admin the service creates from TESSERA_ADMIN_*) serves every operation
  that does not end sessions. Nothing a test does revokes it: requests aimed
  at /users/{main or root id} are re-aimed at a random id, and the
  operations below never see its token. So a resource created in a stateful
  chain stays reachable by the next call of the chain
  (ensure_resource_availability stays on).
- Operations that end sessions or spend a token (logout, logout-all,
  password change, DELETE /users/me, DELETE /auth/sessions/{id}, refresh)
  get a throw-away account's token of their own.
- The browser operations (the service runs with TESSERA_COOKIES=true) get a
  new browser session of a throw-away account: /auth/browser/refresh its
  refresh cookie, /auth/browser/logout its access cookie, each with the
  session's `X-CSRF-Token` and no Authorization header (which would win
  over the cookie). Cookie names are the document's (`__Host-…`,
  `__Secure-…`: the service runs with Secure cookies, which this client,
  no browser, sends over plain HTTP all the same), so that ignored_auth's
  probes remove the very cookie that authenticated.
- Everywhere else the credential is the bearer (accessToken). The
  document also lists the access cookie as an alternative, so schemathesis
  may add a generated `__Host-tessera-access` cookie, and the Authorization
  header became optional: a generated cookie stays (the header wins over
  it), a generated `Bearer <junk>` is replaced.
- A token the stateful phase put there itself through an OpenAPI link
  (login -> me with `Bearer {$response.body#/access_token}`, a JWT) is
  kept.

Test data (schemathesis "seed known IDs"): positive cases of operations
whose success needs a resource the schema cannot name get one that exists:
products get the seed category, DELETE /auth/sessions/{id} the throw-away's
second session, PUT /users/me/password the throw-away's current password,
/auth/login and /auth/browser/login a new throw-away account's email or
username and password. One-time tokens come from the mail the service
writes to its log (log delivery, TESSERA_ST_LOG; read with
scripts/lib/mail-token's parser): /auth/password/reset gets the token of a
fresh reset link (forgot of a throw-away account), /auth/email/verify that
of a throw-away account's registration mail. Tokens are fetched in batches
(one wait for the mail sender per batch), one account per token: a link is
spent by its use, a newer link or any password change of its account.

Second factor: the operations that need one get a throw-away account of
their own (the main account never gets a factor: its logins would then need
a code). Positive cases of /auth/mfa/totp/confirm get an account with a
pending factor and a TOTP code of it (computed here, RFC 6238); DELETE
/auth/mfa/totp and /auth/mfa/recovery-codes an account with an active
factor and one of its recovery codes (a time step is accepted once, a
recovery code needs no clock); /auth/mfa/verify and its browser variant
the mfa_token of a fresh login of such an account and a recovery code.

Coverage: every answer's status is appended to TESSERA_ST_STATS
("METHOD /path/template status" per line); scripts/schemathesis fails the
run unless every operation of the document got a 2xx.
"""

import base64
import hashlib
import hmac
import importlib.machinery
import importlib.util
import itertools
import json
import os
import re
import struct
import time
import urllib.error
import urllib.request
import uuid

import schemathesis

BASE = os.environ["TESSERA_ST_BASE"]
ROOT_EMAIL = os.environ["TESSERA_ADMIN_EMAIL"]
ROOT_PASSWORD = os.environ["TESSERA_ADMIN_PASSWORD"]
STATS = os.environ.get("TESSERA_ST_STATS")
LOG = os.environ["TESSERA_ST_LOG"]
PASSWORD = "schemathesis-user-password"
SERIAL = itertools.count(1)
# Tokens fetched per wait for the mail sender (it polls its outbox twice a second).
BATCH = 10
MAIL_TIMEOUT = 30.0

# The cookie names the document declares (TESSERA_COOKIE_SECURE=true).
ACCESS_COOKIE = "__Host-tessera-access"
REFRESH_COOKIE = "__Secure-tessera-refresh"

# (method, path template) -> what the case needs instead of the main token.
THROWAWAY = {
    ("POST", "/auth/logout"),
    ("POST", "/auth/logout-all"),
    ("PUT", "/users/me/password"),
    ("DELETE", "/users/me"),
    ("DELETE", "/auth/sessions/{id}"),
}
LOGINS = {("POST", "/auth/login"), ("POST", "/auth/browser/login")}
# Second-factor operations with a bearer: what state their account needs.
MFA_BEARER = {
    ("POST", "/auth/mfa/totp"): "none",
    ("POST", "/auth/mfa/totp/confirm"): "pending",
    ("DELETE", "/auth/mfa/totp"): "active",
    ("POST", "/auth/mfa/recovery-codes"): "active",
}
MFA_VERIFY = {
    ("POST", "/auth/mfa/verify"): "/auth/login",
    ("POST", "/auth/browser/mfa/verify"): "/auth/browser/login",
}
# A bearer a stateful link put there: one of the service's JWTs.
LINK_BEARER = re.compile(r"Bearer (eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)")


def _load_mail_token():
    """scripts/lib/mail-token as a module (its log parser)."""
    path = os.path.join(os.path.dirname(__file__), "..", "lib", "mail-token")
    loader = importlib.machinery.SourceFileLoader("mail_token", path)
    spec = importlib.util.spec_from_loader("mail_token", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


MAIL_TOKEN = _load_mail_token()
LINKS = {
    page: re.compile("/" + page + r"#token=([A-Za-z0-9_-]{43})(?![A-Za-z0-9_-])")
    for page in ("reset-password", "verify-email")
}


def call(method, path, body=None, token=None):
    status, body, _ = call_full(method, path, body, token)
    return status, body


def call_full(method, path, body=None, token=None):
    """(status, JSON body, Set-Cookie values) of a request."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            cookies = resp.headers.get_all("Set-Cookie") or []
            return resp.status, json.loads(raw) if raw else None, cookies
    except urllib.error.HTTPError as e:
        return e.code, None, []


def login(email, password):
    status, body = call("POST", "/auth/login", {"email": email, "password": password})
    if status != 200:
        raise RuntimeError(f"tessera_auth: login of {email} failed with {status}")
    return body


def register_account():
    """A new account (role user): {email, username, id}."""
    n = next(SERIAL)
    email = f"st-{os.getpid()}-{n}@example.com"
    username = f"st_{os.getpid()}_{n}"
    status, user = call(
        "POST",
        "/auth/register",
        {"username": username, "email": email, "password": PASSWORD},
    )
    if status != 201:
        raise RuntimeError(f"tessera_auth: register failed with {status}")
    return {"email": email, "username": username, "id": user["id"]}


def register():
    """A new account (role user); its email and id."""
    account = register_account()
    return account["email"], account["id"]


def browser_session():
    """A new browser session of a new account: its cookies and CSRF token."""
    email, _ = register()
    status, body, set_cookies = call_full(
        "POST", "/auth/browser/login", {"email": email, "password": PASSWORD}
    )
    if status != 200:
        raise RuntimeError(f"tessera_auth: browser login of {email} failed with {status}")
    cookies = {}
    for header in set_cookies:
        name, _, value = header.split(";", 1)[0].partition("=")
        cookies[name.strip()] = value.strip()
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        if name not in cookies:
            raise RuntimeError(f"tessera_auth: browser login set no {name} cookie ({set_cookies})")
    return cookies, body["csrf_token"]


def totp(secret, at=None):
    """RFC 6238 (SHA-1, 6 digits, 30 s) code of a base32 secret."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    counter = int((time.time() if at is None else at) // 30)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 15
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return "%06d" % (value % 1_000_000)


def mfa_account(state):
    """A new account with its fresh tokens, and a factor in `state`
    ("none", "pending" or "active"): {email, tokens, secret, codes}."""
    email, _ = register()
    tokens = login(email, PASSWORD)
    account = {"email": email, "tokens": tokens, "secret": None, "codes": []}
    if state == "none":
        return account
    status, enrolled = call("POST", "/auth/mfa/totp", token=tokens["access_token"])
    if status != 200:
        raise RuntimeError(f"tessera_auth: enrolment failed with {status}")
    account["secret"] = enrolled["secret"]
    if state == "active":
        status, body = call(
            "POST",
            "/auth/mfa/totp/confirm",
            {"code": totp(enrolled["secret"])},
            token=tokens["access_token"],
        )
        if status != 200:
            raise RuntimeError(f"tessera_auth: confirmation failed with {status}")
        account["codes"] = body["recovery_codes"]
    return account


def mfa_challenge(login_path):
    """The mfa_token of a fresh login of an account with an active factor,
    and one of its recovery codes."""
    account = mfa_account("active")
    req = urllib.request.Request(
        BASE + login_path,
        data=json.dumps({"email": account["email"], "password": PASSWORD}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        urllib.request.urlopen(req, timeout=10)
    except urllib.error.HTTPError as e:
        body = json.loads(e.read() or b"{}")
        if e.code == 403 and body.get("mfa_token"):
            return body["mfa_token"], account["codes"][0]
        raise RuntimeError(f"tessera_auth: {login_path} answered {e.code} {body}") from e
    raise RuntimeError(f"tessera_auth: {login_path} of an account with a factor answered 200")


def valid(token):
    return token is not None and call("GET", "/auth/verify", token=token)[0] == 200


class Mailbox:
    """The link tokens the service's log delivery wrote, read incrementally:
    (page, token, lower-cased strings of the log event) in log order."""

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.links = []

    def _read(self):
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1  # a line still being written waits
        self.offset += end
        for line in chunk[:end].decode("utf-8", "replace").splitlines():
            try:
                texts = list(MAIL_TOKEN.strings(json.loads(line)))
            except ValueError:
                continue
            lowered = [t.lower() for t in texts]
            for page, link in LINKS.items():
                for text in texts:
                    for reading in MAIL_TOKEN.readings(text):
                        for match in link.finditer(reading):
                            self.links.append((page, match.group(1), lowered))

    def newest(self, address, page):
        address = address.lower()
        found = None
        for p, token, texts in self.links:
            if p == page and any(address in t for t in texts):
                found = token
        return found

    def wait(self, addresses, page):
        """The newest `page` token of each address, waiting for the sender."""
        deadline = time.monotonic() + MAIL_TIMEOUT
        while True:
            self._read()
            tokens = [self.newest(a, page) for a in addresses]
            if all(tokens):
                return tokens
            if time.monotonic() > deadline:
                missing = [a for a, t in zip(addresses, tokens) if not t]
                raise RuntimeError(
                    f"tessera_auth: no {page} mail for {missing} in {self.path} after "
                    f"{MAIL_TIMEOUT:g} s (log delivery on, tessera::mail at info?)"
                )
            time.sleep(0.1)


MAILBOX = Mailbox(LOG)
STATE = {}
# Accounts whose pooled link token must stay good: requests aimed at them
# through /users/{id} are re-aimed (a role or block change, or a delete,
# would make the link LinkInvalid before its case uses it).
RESERVED = set()
# Their addresses: a generated forgot (or address change) naming one would
# make a newer link and the pooled one LinkInvalid; such a case gets
# another address.
RESERVED_EMAILS = set()


def register_reserved():
    email, user_id = register()
    RESERVED.add(user_id)
    RESERVED_EMAILS.add(email.lower())
    return email


def reset_tokens():
    """BATCH tokens of fresh reset links, one per new account."""
    emails = [register_reserved() for _ in range(BATCH)]
    for email in emails:
        status, _ = call("POST", "/auth/password/forgot", {"email": email})
        if status != 202:
            raise RuntimeError(f"tessera_auth: forgot failed with {status}")
    return MAILBOX.wait(emails, "reset-password")


def verify_tokens():
    """BATCH tokens of registration (verification) mails, one per new account."""
    emails = [register_reserved() for _ in range(BATCH)]
    return MAILBOX.wait(emails, "verify-email")


def link_token(page):
    """An unspent token of a `page` link; a new batch when none is left."""
    pool = STATE.setdefault(page, [])
    if not pool:
        pool.extend(reset_tokens() if page == "reset-password" else verify_tokens())
    return pool.pop()


def root():
    """The root admin's token and id, from one login (a later login could
    meet the per-account limit that failed test logins ran up)."""
    if "root" not in STATE:
        token = login(ROOT_EMAIL, ROOT_PASSWORD)["access_token"]
        status, me = call("GET", "/users/me", token=token)
        if status != 200:
            raise RuntimeError(f"tessera_auth: GET /users/me of the root failed with {status}")
        STATE["root"] = {"token": token, "id": me["id"]}
    return STATE["root"]


def main_account():
    """The main admin: token and id; replaced only if something revoked it."""
    main = STATE.get("main")
    if main is None or not valid(main["token"]):
        email, user_id = register()
        status, _ = call("PATCH", f"/users/{user_id}", {"role": "admin"}, token=root()["token"])
        if status != 200:
            raise RuntimeError(f"tessera_auth: promotion failed with {status}")
        main = {"token": login(email, PASSWORD)["access_token"], "id": user_id}
        STATE["main"] = main
    return main


def seed_category():
    """A category that exists, for products' `category_id`."""
    token = root()["token"]
    cid = STATE.get("category")
    if cid is None or call("GET", f"/categories/{cid}", token=token)[0] != 200:
        status, body = call("POST", "/categories", {"name": f"st-seed-{uuid.uuid4()}"}, token=token)
        if status != 201:
            raise RuntimeError(f"tessera_auth: seed category failed with {status}")
        cid = body["id"]
        STATE["category"] = cid
    return cid


def is_positive(case):
    meta = getattr(case, "meta", None)
    generation = getattr(meta, "generation", None)
    mode = getattr(generation, "mode", None)
    return bool(mode is not None and mode.is_positive)


def key(case):
    return (case.method.upper(), case.path)


@schemathesis.hook
def before_call(context, case, kwargs):
    params = case.path_parameters or {}
    protected = {root()["id"], main_account()["id"]}
    if case.path.startswith("/users/") and (params.get("id") in protected or params.get("id") in RESERVED):
        params["id"] = str(uuid.uuid4())
    if case.path == "/categories/{id}" and case.method.upper() == "DELETE":
        if params.get("id") == STATE.get("category"):
            params["id"] = str(uuid.uuid4())
    body = case.body
    if isinstance(body, dict) and str(body.get("email", "")).lower() in RESERVED_EMAILS:
        body["email"] = f"st-other-{uuid.uuid4().hex[:12]}@example.com"
    if is_positive(case) and isinstance(body, dict):
        if case.path.startswith("/products") and body.get("category_id") is not None:
            body["category_id"] = seed_category()
        throwaway = STATE.get("throwaway")
        if key(case) == ("PUT", "/users/me/password") and throwaway:
            body["current_password"] = PASSWORD
        if key(case) in LOGINS and "password" in body:
            account = register_account()
            for field in ("email", "username"):
                if field in body:
                    body[field] = account[field]
            body["password"] = PASSWORD
        if key(case) == ("POST", "/auth/password/reset") and "token" in body:
            body["token"] = link_token("reset-password")
        if key(case) == ("POST", "/auth/email/verify") and "token" in body:
            body["token"] = link_token("verify-email")
        mfa = STATE.get("mfa")
        if key(case) in MFA_BEARER and mfa and "code" in body:
            if MFA_BEARER[key(case)] == "pending":
                body["code"] = totp(mfa["secret"])
            elif mfa["codes"]:
                body["code"] = mfa["codes"][0]
        if key(case) in MFA_VERIFY and "mfa_token" in body and "code" in body:
            body["mfa_token"], body["code"] = mfa_challenge(MFA_VERIFY[key(case)])
    if is_positive(case) and key(case) == ("DELETE", "/auth/sessions/{id}"):
        throwaway = STATE.get("throwaway")
        if throwaway and throwaway.get("other_session"):
            params["id"] = throwaway["other_session"]


@schemathesis.hook
def after_call(context, case, response):
    if STATS:
        with open(STATS, "a", encoding="utf-8") as f:
            f.write(f"{case.method.upper()} {case.path} {response.status_code}\n")


@schemathesis.auth(refresh_interval=None, retry_on=[])
class TesseraAuth:
    def get(self, case, ctx):
        headers = case.headers or {}
        sent = [v for h, v in headers.items() if h.lower() == "authorization"]
        link = LINK_BEARER.fullmatch(str(sent[0])) if sent else None
        if link and not case.path.startswith("/auth/browser/"):
            # Put there by an OpenAPI link: keep it, set again through this
            # provider so that schemathesis counts it as explicit auth
            # (ignored_auth then probes without it, as it should).
            return {"bearer": link.group(1)}
        STATE.pop("throwaway", None)
        STATE.pop("mfa", None)
        if key(case) in MFA_BEARER:
            account = mfa_account(MFA_BEARER[key(case)])
            STATE["mfa"] = account
            return {"bearer": account["tokens"]["access_token"]}
        if case.path == "/auth/refresh":
            # A refresh token of a new session of a new account: each one
            # can be spent once, and the main account is never logged in
            # again (failed test logins may have locked it).
            email, _ = register()
            return {"bearer": login(email, PASSWORD)["refresh_token"]}
        if case.path == "/auth/browser/refresh":
            cookies, csrf = browser_session()
            return {"cookies": {REFRESH_COOKIE: cookies[REFRESH_COOKIE]}, "csrf": csrf}
        if case.path == "/auth/browser/logout":
            cookies, csrf = browser_session()
            return {"cookies": {ACCESS_COOKIE: cookies[ACCESS_COOKIE]}, "csrf": csrf}
        if key(case) in THROWAWAY:
            email, _ = register()
            tokens = login(email, PASSWORD)
            throwaway = {"email": email}
            if key(case) == ("DELETE", "/auth/sessions/{id}"):
                # A second session to end, so the caller's own stays.
                login(email, PASSWORD)
                status, sessions = call("GET", "/auth/sessions", token=tokens["access_token"])
                if status == 200:
                    others = [s["id"] for s in sessions if not s["current"]]
                    throwaway["other_session"] = others[0] if others else None
            STATE["throwaway"] = throwaway
            return {"bearer": tokens["access_token"]}
        return {"bearer": main_account()["token"]}

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        if "bearer" in data:
            case.headers["Authorization"] = f"Bearer {data['bearer']}"
            return
        # A browser session: the cookie alone authenticates (a generated
        # Authorization header would be judged instead of it).
        for name in [h for h in case.headers if h.lower() == "authorization"]:
            del case.headers[name]
        if not isinstance(case.cookies, dict):
            case.cookies = {}
        case.cookies.update(data["cookies"])
        case.headers["X-CSRF-Token"] = data["csrf"]
