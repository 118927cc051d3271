// One pass through Tessera with a client generated from its own OpenAPI
// document: openapi-typescript turns the live /openapi.json into
// generated/schema.ts, openapi-fetch makes the calls. `tsc --noEmit` (strict)
// checks this program against the document, so a renamed field, a request
// body that no longer fits or an error code that no longer exists is a
// compile error; running it against a live server checks the behaviour.
//
//   TESSERA_BASE            http://127.0.0.1:PORT
//   TESSERA_ADMIN_EMAIL     the root admin (to create a category and a product)
//   TESSERA_ADMIN_PASSWORD
//   TESSERA_LOG             the server's log: the service runs with the log
//                           delivery of mail, and the password reset reads
//                           its mailed link there (scripts/lib/mail-token)
//
// The second factor: TOTP codes come from a small RFC 6238 function below
// (node:crypto), checked against the RFC's test vectors first.
//
// scripts/client-typescript does all of that; exits 1 with a message on the
// first unexpected answer.

import { execFile } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import createClient from "openapi-fetch";
import type { components, operations, paths } from "./generated/schema.js";

type Schemas = components["schemas"];
type User = Schemas["User"];
type TokenPair = Schemas["TokenPair"];
type Employee = Schemas["Employee"];
type EmployeePage = Schemas["Page_Employee"];
type Category = Schemas["Category"];
type Product = Schemas["Product"];
type ProductPage = Schemas["ProductPage"];
type ProductItem = Schemas["ProductItem"];
type ErrorBody = Schemas["ErrorBody"];
type ErrorCode = Schemas["ErrorCode"];
// The body of the operation reset_password, by its operation id: a renamed
// operation or a changed body is a compile error.
type ResetBody = operations["reset_password"]["requestBody"]["content"]["application/json"];
type MfaVerifyBody = operations["verify_mfa"]["requestBody"]["content"]["application/json"];
type TotpEnrolment = Schemas["TotpEnrolment"];
type RecoveryCodes = Schemas["RecoveryCodes"];

class FlowError extends Error {}

function fail(message: string): never {
    throw new FlowError(message);
}

function env(name: string): string {
    const value = process.env[name];
    if (value === undefined || value === "") {
        fail(`${name} is not set (scripts/client-typescript sets it)`);
    }
    return value;
}

// What every openapi-fetch call returns, seen loosely enough to report on it.
interface Outcome {
    data?: unknown;
    error?: unknown;
    response: Response;
}

function describe(r: Outcome): string {
    const body = r.error !== undefined ? r.error : r.data;
    return `HTTP ${r.response.status}${body === undefined ? "" : ` ${JSON.stringify(body)}`}`;
}

// The call answered `status` with a body: return that body, typed by the document.
function ok<R extends Outcome>(what: string, r: R, status: number): NonNullable<R["data"]> {
    if (r.response.status !== status) {
        fail(`${what}: expected HTTP ${status}, got ${describe(r)}`);
    }
    if (r.data === undefined || r.data === null) {
        fail(`${what}: HTTP ${status} without a body`);
    }
    return r.data as NonNullable<R["data"]>;
}

// The call answered `status` (a 204) and nothing else.
function noContent(what: string, r: Outcome, status = 204): void {
    if (r.response.status !== status) {
        fail(`${what}: expected HTTP ${status}, got ${describe(r)}`);
    }
}

// The call failed with `status` and an error body whose code is `code`.
function refused<R extends Outcome>(
    what: string,
    r: R,
    status: number,
    code: ErrorCode,
): NonNullable<R["error"]> {
    if (r.response.status !== status) {
        fail(`${what}: expected HTTP ${status} ${code}, got ${describe(r)}`);
    }
    const error = r.error as (ErrorBody & NonNullable<R["error"]>) | undefined;
    if (error === undefined || typeof error !== "object" || error === null) {
        fail(`${what}: HTTP ${status} without an error body`);
    }
    if (error.code !== code) {
        fail(`${what}: expected error code ${code}, got ${describe(r)}`);
    }
    if (typeof error.message !== "string" || error.message === "") {
        fail(`${what}: error body without a message: ${describe(r)}`);
    }
    return error;
}

function check(what: string, condition: boolean, detail: unknown): void {
    if (!condition) {
        fail(`${what}: ${JSON.stringify(detail)}`);
    }
}

function bearer(token: string): { Authorization: string } {
    return { Authorization: `Bearer ${token}` };
}

function checkTokenPair(what: string, pair: TokenPair, userId: string): void {
    check(`${what}: access_token`, typeof pair.access_token === "string" && pair.access_token !== "", pair);
    check(`${what}: refresh_token`, typeof pair.refresh_token === "string" && pair.refresh_token !== "", pair);
    check(`${what}: access and refresh tokens differ`, pair.access_token !== pair.refresh_token, pair);
    check(`${what}: token_type is Bearer`, pair.token_type === "Bearer", pair);
    check(`${what}: expires_in > 0`, Number.isInteger(pair.expires_in) && pair.expires_in > 0, pair);
    check(
        `${what}: refresh_expires_in > expires_in`,
        Number.isInteger(pair.refresh_expires_in) && pair.refresh_expires_in > pair.expires_in,
        pair,
    );
    check(`${what}: user_id`, pair.user_id === userId, pair);
}

function isFullProduct(item: ProductItem): item is Product {
    return "price" in item;
}

const steps: Array<[string, () => Promise<void>]> = [];
function step(name: string, run: () => Promise<void>): void {
    steps.push([name, run]);
}

const base = process.env["TESSERA_BASE"];
if (base === undefined || base === "") {
    console.error("FAIL TESSERA_BASE is not set (scripts/client-typescript sets it)");
    process.exit(1);
}
const client = createClient<paths>({
    baseUrl: base,
    // No call may hang the test: 10 s each.
    fetch: (request: Request) => fetch(request, { signal: AbortSignal.timeout(10_000) }),
});
const suffix = randomBytes(6).toString("hex");
const username = `ts_client.${suffix}`;
const email = `ts-client-${suffix}@example.com`;
const password = `pw-${suffix}-long-enough`;

// Build output lives in clients/typescript/build/: the repository is three up.
const mailToken = fileURLToPath(new URL("../../../scripts/lib/mail-token", import.meta.url));

// The token of the newest reset link mailed to `address`, read from the
// server log the way a user opens the mail (the helper waits for it).
async function mailedResetToken(address: string): Promise<string> {
    try {
        const { stdout } = await promisify(execFile)(
            "python3",
            [mailToken, "--to", address, "--page", "reset-password", "--log", env("TESSERA_LOG")],
            { timeout: 60_000 },
        );
        return stdout.trim();
    } catch (e) {
        const stderr = (e as { stderr?: unknown }).stderr;
        fail(`no reset link mailed to ${address}: ${typeof stderr === "string" ? stderr.trim() : String(e)}`);
    }
}

// The User carries email_verified and pending_email (null or absent: none pending).
function checkAddressFields(what: string, u: User, verified: boolean): void {
    const emailVerified: boolean = u.email_verified;
    check(`${what}: email_verified is ${verified}`, emailVerified === verified, u);
    const pending: string | null | undefined = u.pending_email;
    check(`${what}: no pending_email`, pending === null || pending === undefined, u);
}

let user: User;
let tokens: TokenPair;
let employee: Employee;
let product: Product;

step("register", async () => {
    const r = await client.POST("/auth/register", { body: { username, email, password } });
    user = ok("POST /auth/register", r, 201);
    check("register: id", typeof user.id === "string" && user.id !== "", user);
    check("register: email", user.email === email, user);
    check("register: username", user.username === username, user);
    check("register: role user", user.role === "user", user);
    check("register: not blocked", user.blocked === false, user);
});

step("login", async () => {
    const r = await client.POST("/auth/login", { body: { email, password } });
    tokens = ok("POST /auth/login", r, 200);
    checkTokenPair("login", tokens, user.id);
});

step("users/me", async () => {
    const r = await client.GET("/users/me", { headers: bearer(tokens.access_token) });
    const me: User = ok("GET /users/me", r, 200);
    check("users/me: email", me.email === email, me);
    check("users/me: id", me.id === user.id, me);
});

step("refresh", async () => {
    const r = await client.POST("/auth/refresh", { headers: bearer(tokens.refresh_token) });
    const rotated: TokenPair = ok("POST /auth/refresh", r, 200);
    checkTokenPair("refresh", rotated, user.id);
    check("refresh: a new refresh token", rotated.refresh_token !== tokens.refresh_token, rotated);
    tokens = rotated;
});

step("employees: create", async () => {
    const r = await client.POST("/employees", {
        headers: bearer(tokens.access_token),
        body: { name: `Ada ${suffix}`, position: "Engineer" },
    });
    employee = ok("POST /employees", r, 201);
    check("employee: name", employee.name === `Ada ${suffix}`, employee);
    check("employee: position", employee.position === "Engineer", employee);
    check("employee: owner_id", employee.owner_id === user.id, employee);
});

step("employees: list", async () => {
    const r = await client.GET("/employees", {
        headers: bearer(tokens.access_token),
        params: { query: { page: 1, per_page: 100 } },
    });
    const page: EmployeePage = ok("GET /employees", r, 200);
    check("employees page: page 1", page.page === 1, page);
    check("employees page: per_page", page.per_page === 100, page);
    check("employees page: total", page.total === 1, page);
    check("employees page: items", Array.isArray(page.items) && page.items.length === 1, page);
    const found = page.items.find((e) => e.id === employee.id);
    check("employees page: has the new employee", found?.name === employee.name, page);
});

step("employees: delete", async () => {
    const path = { path: { id: employee.id } };
    noContent(
        "DELETE /employees/{id}",
        await client.DELETE("/employees/{id}", { headers: bearer(tokens.access_token), params: path }),
    );
    refused(
        "GET /employees/{id} after delete",
        await client.GET("/employees/{id}", { headers: bearer(tokens.access_token), params: path }),
        404,
        "NotFound",
    );
});

step("products: admin creates one", async () => {
    const login = await client.POST("/auth/login", {
        body: { email: env("TESSERA_ADMIN_EMAIL"), password: env("TESSERA_ADMIN_PASSWORD") },
    });
    const admin: TokenPair = ok("POST /auth/login (admin)", login, 200);
    const category: Category = ok(
        "POST /categories",
        await client.POST("/categories", {
            headers: bearer(admin.access_token),
            body: { name: `TS ${suffix}` },
        }),
        201,
    );
    check("category: name", category.name === `TS ${suffix}`, category);
    product = ok(
        "POST /products",
        await client.POST("/products", {
            headers: bearer(admin.access_token),
            body: { name: `Widget ${suffix}`, price: 19.99, quantity: 3, category_id: category.id },
        }),
        201,
    );
    check("product: price", product.price === 19.99, product);
    check("product: quantity", product.quantity === 3, product);
    check("product: category_id", product.category_id === category.id, product);
});

step("products: anonymous list is limited", async () => {
    const r = await client.GET("/products", { params: { query: { category_id: product.category_id } } });
    const page: ProductPage = ok("GET /products (anonymous)", r, 200);
    check("anonymous products: limited", page.limited === true, page);
    const item = page.items.find((p) => p.id === product.id);
    check("anonymous products: has the product", item !== undefined, page);
    check(
        "anonymous products: only id and name",
        item !== undefined && Object.keys(item).sort().join(",") === "id,name" && item.name === product.name,
        item,
    );
});

step("products: signed-in list is full", async () => {
    const r = await client.GET("/products", {
        headers: bearer(tokens.access_token),
        params: { query: { category_id: product.category_id } },
    });
    const page: ProductPage = ok("GET /products (signed in)", r, 200);
    // `limited` may be false or left out.
    check("signed-in products: not limited", page.limited !== true, page);
    const item = page.items.find((p) => p.id === product.id);
    check(
        "signed-in products: the full product",
        item !== undefined && isFullProduct(item) && item.price === 19.99 && item.quantity === 3,
        item,
    );
});

step("logout", async () => {
    noContent("POST /auth/logout", await client.POST("/auth/logout", { headers: bearer(tokens.access_token) }));
    const r = await client.GET("/users/me", { headers: bearer(tokens.access_token) });
    refused("GET /users/me after logout", r, 401, "TokenRevoked");
    // The typed error of openapi-fetch itself: ErrorBody, its code an ErrorCode.
    const error: ErrorBody | undefined = r.error;
    check("logout: typed error code", error?.code === "TokenRevoked", error);
});

// Password reset through the mailed link: a fresh account, so the flow above
// stays as it is.
const resetEmail = `ts-reset-${suffix}@example.com`;
const oldPassword = `old-${suffix}-long-enough`;
const newPassword = `new-${suffix}-long-enough`;
let resetUser: User;
let before: TokenPair;
let resetToken: string;

step("reset: register and log in", async () => {
    const r = await client.POST("/auth/register", {
        body: { username: `ts_reset.${suffix}`, email: resetEmail, password: oldPassword },
    });
    resetUser = ok("POST /auth/register", r, 201);
    checkAddressFields("reset: register", resetUser, false);
    const login = await client.POST("/auth/login", { body: { email: resetEmail, password: oldPassword } });
    before = ok("POST /auth/login", login, 200);
    checkTokenPair("reset: login before", before, resetUser.id);
});

step("reset: forgot password", async () => {
    const r = await client.POST("/auth/password/forgot", { body: { email: resetEmail } });
    const accepted = ok("POST /auth/password/forgot", r, 202);
    check("forgot: status accepted", accepted.status === "accepted", accepted);
    // An address without an account gets the very same answer.
    const unknown = ok(
        "POST /auth/password/forgot (unknown address)",
        await client.POST("/auth/password/forgot", { body: { email: `ts-nobody-${suffix}@example.com` } }),
        202,
    );
    check("forgot: same answer for an unknown address", JSON.stringify(unknown) === JSON.stringify(accepted), unknown);
});

step("reset: read the mailed link", async () => {
    resetToken = await mailedResetToken(resetEmail);
    check("reset link: a 43-character base64url token", /^[A-Za-z0-9_-]{43}$/.test(resetToken), resetToken.length);
});

step("reset: a wrong token is LinkInvalid", async () => {
    const body: ResetBody = { token: "A".repeat(43), new_password: newPassword };
    const r = await client.POST("/auth/password/reset", { body });
    refused("POST /auth/password/reset (wrong token)", r, 400, "LinkInvalid");
});

step("reset: set the new password", async () => {
    const body: ResetBody = { token: resetToken, new_password: newPassword };
    noContent("POST /auth/password/reset", await client.POST("/auth/password/reset", { body }));
    const again: ResetBody = { token: resetToken, new_password: `third-${suffix}-long-enough` };
    refused(
        "POST /auth/password/reset (spent link)",
        await client.POST("/auth/password/reset", { body: again }),
        400,
        "LinkInvalid",
    );
});

step("reset: sessions from before are over", async () => {
    const r = await client.GET("/users/me", { headers: bearer(before.access_token) });
    refused("GET /users/me (session from before the reset)", r, 401, "TokenRevoked");
});

step("reset: the old password is refused, the new one works", async () => {
    refused(
        "POST /auth/login (old password)",
        await client.POST("/auth/login", { body: { email: resetEmail, password: oldPassword } }),
        401,
        "InvalidCredentials",
    );
    const after: TokenPair = ok(
        "POST /auth/login (new password)",
        await client.POST("/auth/login", { body: { email: resetEmail, password: newPassword } }),
        200,
    );
    checkTokenPair("login with the new password", after, resetUser.id);
    const r = await client.GET("/users/me", { headers: bearer(after.access_token) });
    const me: User = ok("GET /users/me", r, 200);
    // The link proved the mailbox.
    checkAddressFields("reset: me", me, true);
});

// The second factor: a fresh account enrols TOTP, confirms it, logs in
// through the 403 MfaRequired challenge with a code and with a recovery code,
// and removes the factor.

// RFC 4648 base32, the form of the secret (and of the otpauth URI's secret=).
function base32Decode(text: string): Buffer {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const bytes: number[] = [];
    let bits = 0;
    let value = 0;
    for (const ch of text.replace(/=+$/, "").toUpperCase()) {
        const index = alphabet.indexOf(ch);
        if (index < 0) {
            fail(`not base32: ${JSON.stringify(text)}`);
        }
        // At most 12 bits are pending at once.
        value = ((value << 5) | index) & 0xfff;
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            bytes.push((value >>> bits) & 0xff);
        }
    }
    return Buffer.from(bytes);
}

// RFC 6238 TOTP as the service uses it: HMAC-SHA1, 6 digits, `step` = unix time / 30.
function totpAt(key: Buffer, step: number): string {
    const counter = Buffer.alloc(8);
    counter.writeBigUInt64BE(BigInt(step));
    const mac = createHmac("sha1", key).update(counter).digest();
    const offset = mac.readUInt8(mac.length - 1) & 0x0f;
    const binary = mac.readUInt32BE(offset) & 0x7fffffff;
    return String(binary % 1_000_000).padStart(6, "0");
}

// The user's authenticator app: a code of a time step not used yet. The
// service accepts a step once per account, and the previous, current or next
// 30 s step; each call picks a step of its own among those, and waits for the
// next step when none is left that stays valid long enough.
class Authenticator {
    private readonly used = new Set<number>();
    constructor(readonly key: Buffer) {}

    now(): string {
        return totpAt(this.key, Math.floor(Date.now() / 1000 / 30));
    }

    async code(): Promise<string> {
        for (;;) {
            const now = Date.now() / 1000;
            const current = Math.floor(now / 30);
            // The current and the next step stay valid for 30 s at least; the
            // previous one only until the current step ends.
            const candidates = now - current * 30 < 20 ? [current, current + 1, current - 1] : [current, current + 1];
            const free = candidates.find((s) => !this.used.has(s));
            if (free !== undefined) {
                this.used.add(free);
                return totpAt(this.key, free);
            }
            await new Promise((done) => setTimeout(done, ((current + 1) * 30 - now + 0.5) * 1000));
        }
    }
}

// The payload of a JWT, as any app can read it (no signature check here).
function accessClaims(token: string): { amr?: unknown } {
    const payload = token.split(".")[1];
    if (payload === undefined) {
        fail(`not a JWT: ${token}`);
    }
    return JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as { amr?: unknown };
}

function checkAmr(what: string, pair: TokenPair, want: string[]): void {
    const amr = accessClaims(pair.access_token).amr;
    check(`${what}: amr ${JSON.stringify(want)}`, JSON.stringify(amr) === JSON.stringify(want), amr);
}

const mfaEmail = `ts-mfa-${suffix}@example.com`;
const mfaPassword = `mfa-${suffix}-long-enough`;
let mfaUser: User;
let mfaTokens: TokenPair;
let app: Authenticator;
let confirmCode: string;
let recoveryCodes: string[];

// A login of the account with a factor: 403 MfaRequired with an mfa_token.
async function mfaChallenge(what: string): Promise<string> {
    const r = await client.POST("/auth/login", { body: { email: mfaEmail, password: mfaPassword } });
    const error: ErrorBody = refused(what, r, 403, "MfaRequired");
    const token: string | undefined = error.mfa_token;
    const expiresIn: number | undefined = error.expires_in;
    if (typeof token !== "string" || token.length < 22) {
        fail(`${what}: no mfa_token in ${JSON.stringify(error)}`);
    }
    check(`${what}: 0 < expires_in <= 300`, expiresIn !== undefined && expiresIn > 0 && expiresIn <= 300, error);
    return token;
}

// /auth/mfa/verify answers a TokenPair whose access token says pwd and otp.
async function verified(what: string, body: MfaVerifyBody): Promise<TokenPair> {
    const pair: TokenPair = ok(what, await client.POST("/auth/mfa/verify", { body }), 200);
    checkTokenPair(what, pair, mfaUser.id);
    checkAmr(what, pair, ["pwd", "otp"]);
    return pair;
}

step("mfa: the TOTP function meets RFC 6238's test vectors", async () => {
    const key = Buffer.from("12345678901234567890", "ascii");
    // T = 59 s and 1111111109 s: 94287082 and 07081804 (8 digits) in the RFC.
    check("rfc 6238: T=59", totpAt(key, 1) === "287082", totpAt(key, 1));
    check("rfc 6238: T=1111111109", totpAt(key, 37037036) === "081804", totpAt(key, 37037036));
    check("base32", base32Decode("GEZDGNBVGY3TQOJQ").toString("ascii") === "1234567890", "GEZDGNBVGY3TQOJQ");
});

step("mfa: register and log in", async () => {
    const r = await client.POST("/auth/register", {
        body: { username: `ts_mfa.${suffix}`, email: mfaEmail, password: mfaPassword },
    });
    mfaUser = ok("POST /auth/register", r, 201);
    const login = await client.POST("/auth/login", { body: { email: mfaEmail, password: mfaPassword } });
    mfaTokens = ok("POST /auth/login", login, 200);
    checkTokenPair("mfa: login", mfaTokens, mfaUser.id);
    checkAmr("mfa: login", mfaTokens, ["pwd"]);
});

step("mfa: enrol", async () => {
    const r = await client.POST("/auth/mfa/totp", { headers: bearer(mfaTokens.access_token) });
    const enrolment: TotpEnrolment = ok("POST /auth/mfa/totp", r, 200);
    const uri = new URL(enrolment.otpauth_uri);
    check("enrol: otpauth://totp/", uri.protocol === "otpauth:" && uri.host === "totp", enrolment.otpauth_uri);
    check("enrol: the URI's secret", uri.searchParams.get("secret") === enrolment.secret, enrolment.otpauth_uri);
    check("enrol: qr_svg", enrolment.qr_svg.includes("<svg"), enrolment.qr_svg.slice(0, 80));
    const key = base32Decode(enrolment.secret);
    check("enrol: a 160-bit secret", key.length === 20, key.length);
    app = new Authenticator(key);
});

step("mfa: confirm", async () => {
    confirmCode = await app.code();
    const r = await client.POST("/auth/mfa/totp/confirm", {
        headers: bearer(mfaTokens.access_token),
        body: { code: confirmCode },
    });
    const codes: RecoveryCodes = ok("POST /auth/mfa/totp/confirm", r, 200);
    recoveryCodes = codes.recovery_codes;
    check("confirm: 10 distinct recovery codes", new Set(recoveryCodes).size === 10, recoveryCodes);
    check("confirm: each of 10 characters or more", recoveryCodes.every((c) => c.length >= 10), recoveryCodes);
});

step("mfa: log in with a TOTP code", async () => {
    const mfaToken = await mfaChallenge("POST /auth/login (factor)");
    // The confirm code's step is spent: the same code is refused.
    refused(
        "POST /auth/mfa/verify (the confirm code again)",
        await client.POST("/auth/mfa/verify", { body: { mfa_token: mfaToken, code: confirmCode } }),
        401,
        "InvalidCredentials",
    );
    const pair = await verified("POST /auth/mfa/verify (totp)", { mfa_token: mfaToken, code: await app.code() });
    // A right code (left unspent: the token is refused before the code is
    // looked at) cannot reuse the token.
    refused(
        "POST /auth/mfa/verify (used mfa_token)",
        await client.POST("/auth/mfa/verify", { body: { mfa_token: mfaToken, code: app.now() } }),
        401,
        "TokenInvalid",
    );
    const rotated: TokenPair = ok(
        "POST /auth/refresh (mfa session)",
        await client.POST("/auth/refresh", { headers: bearer(pair.refresh_token) }),
        200,
    );
    checkAmr("refresh keeps the session's amr", rotated, ["pwd", "otp"]);
});

step("mfa: a recovery code works once", async () => {
    const code = recoveryCodes[0] ?? fail("no recovery code");
    mfaTokens = await verified("POST /auth/mfa/verify (recovery code)", {
        mfa_token: await mfaChallenge("POST /auth/login (factor, recovery)"),
        code,
    });
    refused(
        "POST /auth/mfa/verify (the same recovery code again)",
        await client.POST("/auth/mfa/verify", {
            body: { mfa_token: await mfaChallenge("POST /auth/login (factor, again)"), code },
        }),
        401,
        "InvalidCredentials",
    );
});

step("mfa: remove the factor", async () => {
    noContent(
        "DELETE /auth/mfa/totp",
        await client.DELETE("/auth/mfa/totp", {
            headers: bearer(mfaTokens.access_token),
            body: { code: await app.code() },
        }),
    );
    const plain: TokenPair = ok(
        "POST /auth/login (no factor)",
        await client.POST("/auth/login", { body: { email: mfaEmail, password: mfaPassword } }),
        200,
    );
    checkAmr("login without a factor", plain, ["pwd"]);
});

async function main(): Promise<void> {
    for (const [name, run] of steps) {
        try {
            await run();
        } catch (e) {
            if (e instanceof FlowError) {
                throw e;
            }
            // A network failure, a timeout, a body that is not JSON.
            const cause = e instanceof Error && e.cause !== undefined ? ` (${String(e.cause)})` : "";
            throw new FlowError(`${name}: ${String(e)}${cause}`);
        }
        console.log(`ok ${name}`);
    }
    console.log(`flow: ${steps.length} steps passed against ${base}`);
}

main().catch((e: unknown) => {
    if (e instanceof FlowError) {
        console.error(`FAIL ${e.message}`);
    } else {
        console.error("FAIL unexpected exception:", e);
    }
    process.exit(1);
});
