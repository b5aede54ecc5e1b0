// A real Better Auth server for the end-to-end tests: email+password sign-up, the jwt
// plugin with a `uuid` custom claim (the seed's hybrid id), in-memory storage.
//
// Environment: PORT (required), HOST (127.0.0.1), JWT_ALG (EdDSA), ROTATION_INTERVAL and
// GRACE_PERIOD (seconds; rotation off when unset), EXPIRATION ("15m"), AUDIENCE (the origin),
// SESSIONS (set: the bearer plugin, and the session cookie cache signed by the jwt plugin).
import { createServer } from "node:http";
import { randomUUID } from "node:crypto";
import { betterAuth } from "better-auth";
import { memoryAdapter } from "better-auth/adapters/memory";
import { bearer, jwt } from "better-auth/plugins";
import { toNodeHandler } from "better-auth/node";

const host = process.env.HOST ?? "127.0.0.1";
const port = Number(process.env.PORT);
if (!port) throw new Error("PORT is required");
// BASE_URL: the origin the browser sees, when Better Auth sits behind a proxy.
const baseURL = process.env.BASE_URL ?? `http://${host}:${port}`;

const jwks = { keyPairConfig: { alg: process.env.JWT_ALG ?? "EdDSA" } };
if (process.env.ROTATION_INTERVAL) {
  jwks.rotationInterval = Number(process.env.ROTATION_INTERVAL);
  jwks.gracePeriod = Number(process.env.GRACE_PERIOD ?? 30);
}

export const auth = betterAuth({
  baseURL,
  secret: "e2e-secret-not-for-production-0123456789abcdef",
  database: memoryAdapter({ user: [], session: [], account: [], verification: [], jwks: [] }),
  emailAndPassword: { enabled: true },
  user: {
    additionalFields: {
      // The application's id: a UUID that every foreign key uses.
      uuid: { type: "string", required: false, input: false, defaultValue: () => randomUUID() },
    },
  },
  ...(process.env.SESSIONS ? { session: { cookieCache: { enabled: true, strategy: "jwt", maxAge: 60 } } } : {}),
  plugins: [
    ...(process.env.SESSIONS ? [bearer()] : []),
    jwt({
      ...(process.env.SESSIONS ? { sessionCookieCache: true } : {}),
      jwt: {
        expirationTime: process.env.EXPIRATION ?? "15m",
        ...(process.env.AUDIENCE ? { audience: process.env.AUDIENCE } : {}),
        definePayload: ({ user }) => ({ ...user, uuid: user.uuid }),
      },
      jwks,
    }),
  ],
});

const handler = toNodeHandler(auth);
const server = createServer((req, res) => {
  if (req.url === "/healthz") {
    res.writeHead(200).end("ok");
    return;
  }
  handler(req, res);
});
server.listen(port, host, () => console.log(`better-auth listening on ${baseURL}`));
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => server.close(() => process.exit(0)));
