"""Schemathesis hooks for scripts/schemathesis (SCHEMATHESIS_HOOKS).

Authentication. Every test case gets a bearer token that is valid when the
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
- A token the stateful phase put there itself through an OpenAPI link
  (login -> me with `Bearer {$response.body#/access_token}`) is kept.
  Schemathesis fills in an empty "Bearer " for the security scheme
  otherwise.

Test data (schemathesis "seed known IDs"): positive cases of operations
whose success needs a resource the schema cannot name get one that exists:
products get the seed category, DELETE /auth/sessions/{id} the throw-away's
second session, PUT /users/me/password the throw-away's current password.

Coverage: every answer's status is appended to TESSERA_ST_STATS
("METHOD /path/template status" per line); scripts/schemathesis fails the
run unless every operation of the document got a 2xx.
"""

import itertools
import json
import os
import urllib.error
import urllib.request
import uuid

import schemathesis

BASE = os.environ["TESSERA_ST_BASE"]
ROOT_EMAIL = os.environ["TESSERA_ADMIN_EMAIL"]
ROOT_PASSWORD = os.environ["TESSERA_ADMIN_PASSWORD"]
STATS = os.environ.get("TESSERA_ST_STATS")
PASSWORD = "schemathesis-user-password"
SERIAL = itertools.count(1)

# (method, path template) -> what the case needs instead of the main token.
THROWAWAY = {
    ("POST", "/auth/logout"),
    ("POST", "/auth/logout-all"),
    ("PUT", "/users/me/password"),
    ("DELETE", "/users/me"),
    ("DELETE", "/auth/sessions/{id}"),
}


def call(method, path, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        return e.code, None


def login(email, password):
    status, body = call("POST", "/auth/login", {"email": email, "password": password})
    if status != 200:
        raise RuntimeError(f"tessera_auth: login of {email} failed with {status}")
    return body


def register():
    """A new account (role user); its email."""
    n = next(SERIAL)
    email = f"st-{os.getpid()}-{n}@example.com"
    status, user = call(
        "POST",
        "/auth/register",
        {"username": f"st_{os.getpid()}_{n}", "email": email, "password": PASSWORD},
    )
    if status != 201:
        raise RuntimeError(f"tessera_auth: register failed with {status}")
    return email, user["id"]


def valid(token):
    return token is not None and call("GET", "/auth/verify", token=token)[0] == 200


STATE = {}


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
    if case.path.startswith("/users/") and params.get("id") in protected:
        params["id"] = str(uuid.uuid4())
    if case.path == "/categories/{id}" and case.method.upper() == "DELETE":
        if params.get("id") == STATE.get("category"):
            params["id"] = str(uuid.uuid4())
    body = case.body
    if is_positive(case) and isinstance(body, dict):
        if case.path.startswith("/products") and body.get("category_id") is not None:
            body["category_id"] = seed_category()
        throwaway = STATE.get("throwaway")
        if key(case) == ("PUT", "/users/me/password") and throwaway:
            body["current_password"] = PASSWORD
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
        if sent and str(sent[0]).startswith("Bearer ") and len(str(sent[0])) > len("Bearer "):
            # Put there by an OpenAPI link: keep it, set again through this
            # provider so that schemathesis counts it as explicit auth
            # (ignored_auth then probes without it, as it should).
            return str(sent[0])[len("Bearer ") :]
        STATE.pop("throwaway", None)
        if case.path == "/auth/refresh":
            # A refresh token of a new session of a new account: each one
            # can be spent once, and the main account is never logged in
            # again (failed test logins may have locked it).
            email, _ = register()
            return login(email, PASSWORD)["refresh_token"]
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
            return tokens["access_token"]
        return main_account()["token"]

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
