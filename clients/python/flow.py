"""End-to-end flow through the generated Python SDK (scripts/client-python).

Runs against a live Tessera at $TESSERA_BASE using only what
openapi-python-client generated from its /openapi.json: the `Client` and
`AuthenticatedClient`, the `api.<tag>.<operation>.sync_detailed` functions
and the `models`. Every status and every parsed type is checked; the first
mismatch ends the run with a message and exit code 1.

The password-reset flow reads the mailed link the way a user would open
it: the service runs with the log delivery (TESSERA_SMTP_URL unset), and
scripts/lib/mail-token finds the link's token in the server log.

The second factor: enrol and confirm a TOTP factor with codes computed by
pyotp (the authenticator app), log in through the 403 `MfaRequired`
challenge with a code and with a recovery code, remove the factor.

Environment: TESSERA_BASE, TESSERA_ADMIN_EMAIL, TESSERA_ADMIN_PASSWORD,
TESSERA_LOG (the server's log file, for the mailed links).
"""

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyotp
from tessera_client import AuthenticatedClient, Client, errors
from tessera_client.api.auth import (
    confirm_totp,
    delete_totp,
    enroll_totp,
    forgot_password,
    login,
    logout,
    refresh,
    register,
    reset_password,
    verify_mfa,
)
from tessera_client.api.catalog import create_category, create_product, list_products
from tessera_client.api.employees import (
    create_employee,
    delete_employee,
    get_employee,
    list_employees,
)
from tessera_client.api.users import get_me
from tessera_client.models import (
    Accepted,
    Category,
    CategoryName,
    Employee,
    ErrorBody,
    ErrorCode,
    ForgotPassword,
    LoginByEmail,
    MfaCode,
    MfaVerify,
    NewEmployee,
    NewProduct,
    PageEmployee,
    Product,
    ProductPage,
    ProductSummary,
    RecoveryCodes,
    Register,
    ResetPassword,
    TokenPair,
    TotpEnrolment,
    User,
)
from tessera_client.types import UNSET, Response

BASE = os.environ["TESSERA_BASE"]
TIMEOUT = 10.0
MAIL_TOKEN = Path(__file__).resolve().parents[2] / "scripts" / "lib" / "mail-token"


class FlowError(Exception):
    pass


def check(step: str, response: Response, status: int, parsed_type: type | None):
    """The response has `status` and, unless `parsed_type` is None, a parsed body of that model."""
    if response.status_code != status:
        raise FlowError(
            f"{step}: expected status {status}, got {int(response.status_code)}: "
            f"{response.content[:500]!r}"
        )
    if parsed_type is not None and not isinstance(response.parsed, parsed_type):
        raise FlowError(
            f"{step}: expected parsed {parsed_type.__name__}, got "
            f"{type(response.parsed).__name__}: {response.parsed!r}"
        )
    print(f"ok  {step}: {status}" + (f" {parsed_type.__name__}" if parsed_type else ""))
    return response.parsed


def expect(step: str, condition: bool, detail: str) -> None:
    if not condition:
        raise FlowError(f"{step}: {detail}")


def check_error(
    step: str, response: Response, status: int, code: ErrorCode
) -> ErrorBody:
    """An error response: `status`, parsed into the typed ErrorBody with `code`."""
    body = check(step, response, status, ErrorBody)
    expect(
        step,
        isinstance(body.code, ErrorCode),
        f"code is not an ErrorCode: {body.code!r}",
    )
    expect(
        step,
        body.code == code,
        f"expected code {code.value}, got {body.code.value} ({body.message})",
    )
    expect(step, isinstance(body.message, str) and body.message != "", "empty message")
    print(f"    code {body.code.value}: {body.message}")
    return body


def anonymous() -> Client:
    return Client(base_url=BASE, timeout=TIMEOUT, raise_on_unexpected_status=True)


def bearer(token: str) -> AuthenticatedClient:
    return AuthenticatedClient(
        base_url=BASE, token=token, timeout=TIMEOUT, raise_on_unexpected_status=True
    )


def login_pair(step: str, email: str, password: str) -> TokenPair:
    pair = check(
        step,
        login.sync_detailed(
            client=anonymous(), body=LoginByEmail(email=email, password=password)
        ),
        200,
        TokenPair,
    )
    expect(step, pair.token_type == "Bearer", f"token_type {pair.token_type!r}")
    expect(step, pair.access_token != "" and pair.refresh_token != "", "empty token")
    return pair


def auth_flow(tag: str) -> tuple[User, TokenPair]:
    username = f"py_{tag}"
    email = f"py-{tag}@example.com"
    password = f"py-secret-{tag}"

    user = check(
        "register",
        register.sync_detailed(
            client=anonymous(),
            body=Register(username=username, email=email, password=password),
        ),
        201,
        User,
    )
    expect("register", user.email == email, f"email {user.email!r}, sent {email!r}")
    expect(
        "register",
        user.username == username,
        f"username {user.username!r}, sent {username!r}",
    )

    pair = login_pair("login by email", email, password)
    expect(
        "login by email",
        pair.user_id == user.id,
        f"user_id {pair.user_id} is not {user.id}",
    )

    me = check("me", get_me.sync_detailed(client=bearer(pair.access_token)), 200, User)
    expect("me", me.email == email, f"email {me.email!r}")
    expect("me", me.id == user.id, f"id {me.id} is not {user.id}")

    # /auth/refresh takes the refresh token as the bearer.
    rotated = check(
        "refresh",
        refresh.sync_detailed(client=bearer(pair.refresh_token)),
        200,
        TokenPair,
    )
    expect(
        "refresh",
        rotated.refresh_token != pair.refresh_token,
        "the refresh token was not rotated",
    )
    expect("refresh", rotated.user_id == user.id, f"user_id {rotated.user_id}")
    return user, rotated


def employee_flow(tag: str, pair: TokenPair, user: User) -> None:
    client = bearer(pair.access_token)
    name = f"Employee {tag}"
    employee = check(
        "create employee",
        create_employee.sync_detailed(
            client=client, body=NewEmployee(name=name, position="Engineer")
        ),
        201,
        Employee,
    )
    expect("create employee", employee.name == name, f"name {employee.name!r}")
    expect(
        "create employee", employee.owner_id == user.id, f"owner_id {employee.owner_id}"
    )

    page = check(
        "list employees",
        list_employees.sync_detailed(client=client, per_page=100),
        200,
        PageEmployee,
    )
    expect(
        "list employees",
        all(isinstance(e, Employee) for e in page.items),
        "an item is not an Employee",
    )
    expect(
        "list employees",
        any(e.id == employee.id for e in page.items),
        f"{employee.id} not in the page",
    )
    expect(
        "list employees",
        page.page == 1 and page.per_page == 100,
        f"page {page.page}, per_page {page.per_page}",
    )
    expect("list employees", page.total >= 1, f"total {page.total}")

    check(
        "delete employee",
        delete_employee.sync_detailed(employee.id, client=client),
        204,
        None,
    )
    check_error(
        "get deleted employee",
        get_employee.sync_detailed(employee.id, client=client),
        404,
        ErrorCode.NOT_FOUND,
    )


def catalog_flow(tag: str, pair: TokenPair) -> None:
    admin = login_pair(
        "admin login",
        os.environ["TESSERA_ADMIN_EMAIL"],
        os.environ["TESSERA_ADMIN_PASSWORD"],
    )
    root = bearer(admin.access_token)

    category = check(
        "create category",
        create_category.sync_detailed(
            client=root, body=CategoryName(name=f"Category {tag}")
        ),
        201,
        Category,
    )
    name = f"Product {tag}"
    product = check(
        "create product",
        create_product.sync_detailed(
            client=root,
            body=NewProduct(
                name=name, price=19.99, quantity=3, category_id=category.id
            ),
        ),
        201,
        Product,
    )
    expect("create product", product.price == 19.99, f"price {product.price!r}")
    expect("create product", product.quantity == 3, f"quantity {product.quantity!r}")
    expect(
        "create product",
        product.category_id == category.id,
        f"category_id {product.category_id}",
    )

    # Anonymous: the document marks the bearer optional here (security
    # [accessToken, {}]); the generator still types the parameter as
    # AuthenticatedClient, but a plain Client is what an anonymous caller has.
    limited = check(
        "list products anonymously",
        list_products.sync_detailed(client=anonymous(), category_id=category.id),
        200,
        ProductPage,
    )
    expect(
        "list products anonymously",
        limited.limited is True,
        f"limited {limited.limited!r}",
    )
    expect(
        "list products anonymously",
        len(limited.items) == 1,
        f"{len(limited.items)} items",
    )
    summary = limited.items[0]
    expect(
        "list products anonymously",
        isinstance(summary, ProductSummary) and not isinstance(summary, Product),
        f"item is {type(summary).__name__}, not ProductSummary",
    )
    expect(
        "list products anonymously",
        summary.id == product.id and summary.name == name,
        f"item {summary!r}",
    )
    expect(
        "list products anonymously",
        set(summary.to_dict()) == {"id", "name"},
        f"item carries {sorted(summary.to_dict())}, not only id and name",
    )

    full = check(
        "list products authenticated",
        list_products.sync_detailed(
            client=bearer(pair.access_token), category_id=category.id
        ),
        200,
        ProductPage,
    )
    expect(
        "list products authenticated",
        full.limited is False,
        f"limited {full.limited!r}",
    )
    expect(
        "list products authenticated", len(full.items) == 1, f"{len(full.items)} items"
    )
    item = full.items[0]
    expect(
        "list products authenticated",
        isinstance(item, Product),
        f"item is {type(item).__name__}",
    )
    expect("list products authenticated", item.id == product.id, f"id {item.id}")
    expect("list products authenticated", item.price == 19.99, f"price {item.price!r}")
    expect(
        "list products authenticated", item.quantity == 3, f"quantity {item.quantity!r}"
    )


def mailed_token(step: str, address: str) -> str:
    """The token of the newest reset link mailed to `address` (from the server log)."""
    found = subprocess.run(
        [sys.executable, str(MAIL_TOKEN), "--to", address, "--page", "reset-password"],
        check=False,  # a failure is reported below, with the helper's message
        capture_output=True,
        text=True,
        timeout=60,
    )
    expect(
        step,
        found.returncode == 0,
        f"no reset link mailed to {address}: {found.stderr.strip()}",
    )
    token = found.stdout.strip()
    print(f"ok  {step}: a reset link for {address}")
    return token


def check_address_fields(step: str, user: User, verified: bool) -> None:
    """The User model carries email_verified and pending_email (null: none pending)."""
    expect(
        step,
        user.email_verified is verified,
        f"email_verified {user.email_verified!r}, expected {verified}",
    )
    expect(
        step,
        user.pending_email is None or user.pending_email is UNSET,
        f"pending_email {user.pending_email!r}, expected none",
    )


def reset_flow(tag: str) -> None:
    """Forgot, the mailed link, reset: the new password works, the old one and
    the sessions from before do not, and the link is spent."""
    email = f"py-reset-{tag}@example.com"
    old_password = f"py-old-secret-{tag}"
    new_password = f"py-new-secret-{tag}"

    user = check(
        "reset: register",
        register.sync_detailed(
            client=anonymous(),
            body=Register(
                username=f"py_reset_{tag}", email=email, password=old_password
            ),
        ),
        201,
        User,
    )
    check_address_fields("reset: register", user, verified=False)
    before = login_pair("reset: login before", email, old_password)

    accepted = check(
        "forgot password",
        forgot_password.sync_detailed(
            client=anonymous(), body=ForgotPassword(email=email)
        ),
        202,
        Accepted,
    )
    expect(
        "forgot password", accepted.status == "accepted", f"status {accepted.status!r}"
    )
    # An address without an account gets the very same answer.
    unknown = check(
        "forgot password (unknown address)",
        forgot_password.sync_detailed(
            client=anonymous(),
            body=ForgotPassword(email=f"py-nobody-{tag}@example.com"),
        ),
        202,
        Accepted,
    )
    expect(
        "forgot password (unknown address)",
        unknown.to_dict() == accepted.to_dict(),
        f"{unknown.to_dict()} differs from {accepted.to_dict()}",
    )

    token = mailed_token("read the mail", email)
    check_error(
        "reset with a wrong token",
        reset_password.sync_detailed(
            client=anonymous(),
            body=ResetPassword(token="A" * 43, new_password=new_password),
        ),
        400,
        ErrorCode.LINK_INVALID,
    )
    check(
        "reset password",
        reset_password.sync_detailed(
            client=anonymous(),
            body=ResetPassword(token=token, new_password=new_password),
        ),
        204,
        None,
    )
    check_error(
        "reset again with the spent link",
        reset_password.sync_detailed(
            client=anonymous(),
            body=ResetPassword(token=token, new_password=f"py-third-secret-{tag}"),
        ),
        400,
        ErrorCode.LINK_INVALID,
    )
    check_error(
        "a session from before the reset",
        get_me.sync_detailed(client=bearer(before.access_token)),
        401,
        ErrorCode.TOKEN_REVOKED,
    )
    check_error(
        "login with the old password",
        login.sync_detailed(
            client=anonymous(), body=LoginByEmail(email=email, password=old_password)
        ),
        401,
        ErrorCode.INVALID_CREDENTIALS,
    )
    after = login_pair("login with the new password", email, new_password)
    me = check(
        "reset: me", get_me.sync_detailed(client=bearer(after.access_token)), 200, User
    )
    # The link proved the mailbox.
    check_address_fields("reset: me", me, verified=True)


def logout_flow(pair: TokenPair) -> None:
    client = bearer(pair.access_token)
    check("logout", logout.sync_detailed(client=client), 204, None)
    check_error(
        "me after logout",
        get_me.sync_detailed(client=client),
        401,
        ErrorCode.TOKEN_REVOKED,
    )


class Authenticator:
    """The user's authenticator app, as pyotp: a code of a time step not used yet.

    The service accepts a step once per account, and a code of the previous,
    current or next 30 s step; so each call picks a step of its own among
    those, and waits for the next step when none is left that stays valid
    long enough for the request to arrive."""

    def __init__(self, secret: str) -> None:
        self.totp = pyotp.TOTP(secret)
        self.used: set[int] = set()

    def code(self) -> str:
        while True:
            now = time.time()
            step = int(now // 30)
            # The current and the next step stay valid for 30 s at least; the
            # previous one only until the current step ends.
            candidates = [step, step + 1]
            if now - step * 30 < 20:
                candidates.append(step - 1)
            for candidate in candidates:
                if candidate not in self.used:
                    self.used.add(candidate)
                    return self.totp.at(candidate * 30)
            time.sleep((step + 1) * 30 - now + 0.5)


def access_claims(token: str) -> dict:
    """The payload of a JWT, as any app can read it (no signature check here)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def mfa_challenge(step: str, email: str, password: str) -> str:
    """A login of an account with a factor: 403 MfaRequired with an mfa_token."""
    body = check_error(
        step,
        login.sync_detailed(
            client=anonymous(), body=LoginByEmail(email=email, password=password)
        ),
        403,
        ErrorCode.MFA_REQUIRED,
    )
    expect(
        step,
        isinstance(body.mfa_token, str) and len(body.mfa_token) >= 22,
        f"mfa_token {body.mfa_token!r}",
    )
    expect(
        step,
        isinstance(body.expires_in, int) and 0 < body.expires_in <= 300,
        f"expires_in {body.expires_in!r}",
    )
    return body.mfa_token


def verified_pair(step: str, mfa_token: str, code: str, user: User) -> TokenPair:
    """/auth/mfa/verify answers a TokenPair whose access token says pwd and otp."""
    pair = check(
        step,
        verify_mfa.sync_detailed(
            client=anonymous(), body=MfaVerify(mfa_token=mfa_token, code=code)
        ),
        200,
        TokenPair,
    )
    expect(step, pair.user_id == user.id, f"user_id {pair.user_id}")
    amr = access_claims(pair.access_token).get("amr")
    expect(step, amr == ["pwd", "otp"], f"amr {amr!r}, expected ['pwd', 'otp']")
    return pair


def mfa_flow(tag: str) -> None:
    """Enrol a TOTP factor, confirm it, log in with a code and with a
    recovery code, remove the factor: the login is plain again."""
    email = f"py-mfa-{tag}@example.com"
    password = f"py-mfa-secret-{tag}"
    user = check(
        "mfa: register",
        register.sync_detailed(
            client=anonymous(),
            body=Register(username=f"py_mfa_{tag}", email=email, password=password),
        ),
        201,
        User,
    )
    pair = login_pair("mfa: login", email, password)
    amr = access_claims(pair.access_token).get("amr")
    expect("mfa: login", amr == ["pwd"], f"amr {amr!r}, expected ['pwd']")

    enrolment = check(
        "enrol totp",
        enroll_totp.sync_detailed(client=bearer(pair.access_token)),
        200,
        TotpEnrolment,
    )
    # The URI is what the QR code holds: an authenticator library reads it.
    from_uri = pyotp.parse_uri(enrolment.otpauth_uri)
    expect(
        "enrol totp",
        isinstance(from_uri, pyotp.TOTP) and from_uri.secret == enrolment.secret,
        f"otpauth_uri {enrolment.otpauth_uri!r} does not carry the secret",
    )
    expect("enrol totp", "<svg" in enrolment.qr_svg, "qr_svg has no <svg>")
    app = Authenticator(enrolment.secret)

    confirm_code = app.code()
    recovery = check(
        "confirm totp",
        confirm_totp.sync_detailed(
            client=bearer(pair.access_token), body=MfaCode(code=confirm_code)
        ),
        200,
        RecoveryCodes,
    )
    codes = recovery.recovery_codes
    expect(
        "confirm totp",
        len(codes) == 10 and len(set(codes)) == 10,
        f"{len(codes)} recovery codes, {len(set(codes))} distinct",
    )
    expect(
        "confirm totp",
        all(isinstance(c, str) and len(c) >= 10 for c in codes),
        f"recovery codes {codes!r}",
    )

    mfa_token = mfa_challenge("login with a factor", email, password)
    # The confirm code's step is spent: the same code is refused.
    check_error(
        "verify with the confirm code again",
        verify_mfa.sync_detailed(
            client=anonymous(), body=MfaVerify(mfa_token=mfa_token, code=confirm_code)
        ),
        401,
        ErrorCode.INVALID_CREDENTIALS,
    )
    otp_pair = verified_pair("verify mfa (totp)", mfa_token, app.code(), user)
    # A right code (left unspent: the token is refused before the code is
    # looked at) cannot reuse the token.
    check_error(
        "verify with the used mfa_token",
        verify_mfa.sync_detailed(
            client=anonymous(),
            body=MfaVerify(mfa_token=mfa_token, code=app.totp.now()),
        ),
        401,
        ErrorCode.TOKEN_INVALID,
    )
    rotated = check(
        "mfa: refresh",
        refresh.sync_detailed(client=bearer(otp_pair.refresh_token)),
        200,
        TokenPair,
    )
    amr = access_claims(rotated.access_token).get("amr")
    expect("mfa: refresh", amr == ["pwd", "otp"], f"amr {amr!r} after a refresh")

    recovery_pair = verified_pair(
        "verify mfa (recovery code)",
        mfa_challenge("login with a factor (recovery)", email, password),
        codes[0],
        user,
    )
    check_error(
        "verify with the same recovery code again",
        verify_mfa.sync_detailed(
            client=anonymous(),
            body=MfaVerify(
                mfa_token=mfa_challenge("login with a factor (again)", email, password),
                code=codes[0],
            ),
        ),
        401,
        ErrorCode.INVALID_CREDENTIALS,
    )

    check(
        "delete totp",
        delete_totp.sync_detailed(
            client=bearer(recovery_pair.access_token), body=MfaCode(code=app.code())
        ),
        204,
        None,
    )
    plain = login_pair("login without a factor", email, password)
    amr = access_claims(plain.access_token).get("amr")
    expect("login without a factor", amr == ["pwd"], f"amr {amr!r}, expected ['pwd']")


def main() -> int:
    tag = uuid.uuid4().hex[:12]
    try:
        user, pair = auth_flow(tag)
        employee_flow(tag, pair, user)
        catalog_flow(tag, pair)
        logout_flow(pair)
        reset_flow(tag)
        mfa_flow(tag)
    except FlowError as err:
        print(f"FAIL {err}", file=sys.stderr)
        return 1
    except errors.UnexpectedStatus as err:
        # A status the document does not list for that operation.
        print(f"FAIL undocumented status: {err}", file=sys.stderr)
        return 1
    print("python client flow: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
