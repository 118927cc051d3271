"""Schemathesis auth hook for scripts/schemathesis (SCHEMATHESIS_HOOKS).

Every test case gets a fresh admin access token that is valid when the
request is sent. A static `-H "Authorization: Bearer ..."` dies with the first
test of POST /auth/logout, /auth/logout-all, PUT /users/me/password or
DELETE /users/me, and every later test of an authenticated operation only
sees 401. So: a "root" admin (created by the service at start from
TESSERA_ADMIN_*) never used by the tests promotes throw-away accounts to
admin; the current account's token is checked with GET /auth/verify before
each case and replaced when a test revoked it (demoted, blocked or deleted
its user).

The root logs in once (a later login could meet the per-account limit that
failed test logins with its email, learnt from GET /users, ran up), and
tests never touch it: a request aimed at /users/{root id} is re-aimed at a
random id before it is sent.
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
PASSWORD = "schemathesis-user-password"


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


def valid(token):
    return token is not None and call("GET", "/auth/verify", token=token)[0] == 200


ROOT = {}


def root():
    """The root admin's token and id, from one login."""
    if not ROOT:
        token = login(ROOT_EMAIL, ROOT_PASSWORD)["access_token"]
        status, me = call("GET", "/users/me", token=token)
        if status != 200:
            raise RuntimeError(f"tessera_auth: GET /users/me of the root failed with {status}")
        ROOT.update(token=token, id=me["id"])
    return ROOT


@schemathesis.hook
def before_call(context, case, kwargs):
    params = case.path_parameters or {}
    if case.path.startswith("/users/") and params.get("id") == root()["id"]:
        params["id"] = str(uuid.uuid4())


@schemathesis.auth(refresh_interval=None, retry_on=[])
class TesseraAuth:
    def __init__(self):
        self.email = None
        self.token = None
        self.serial = itertools.count(1)

    def new_admin(self):
        n = next(self.serial)
        email = f"st-{os.getpid()}-{n}@example.com"
        status, user = call(
            "POST",
            "/auth/register",
            {"username": f"st_{os.getpid()}_{n}", "email": email, "password": PASSWORD},
        )
        if status != 201:
            raise RuntimeError(f"tessera_auth: register failed with {status}")
        status, _ = call("PATCH", f"/users/{user['id']}", {"role": "admin"}, token=root()["token"])
        if status != 200:
            raise RuntimeError(f"tessera_auth: promotion failed with {status}")
        self.email = email
        self.token = login(email, PASSWORD)["access_token"]

    def get(self, case, ctx):
        if not valid(self.token):
            self.new_admin()
        if case.path == "/auth/refresh":
            # A refresh token of a new session: each one can be spent once.
            # (Tests may have locked this account with failed logins.)
            try:
                return login(self.email, PASSWORD)["refresh_token"]
            except RuntimeError:
                self.new_admin()
                return login(self.email, PASSWORD)["refresh_token"]
        return self.token

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
