// Better Auth for the tasks app, on PostgreSQL, issuing JWTs that extauthz verifies.
//
// The hybrid id: Better Auth keeps its own user.id (a random string, the token's
// `sub`), and the application owns user.uuid (a PostgreSQL UUID that every app table
// references, see schema.sql). The jwt plugin puts that uuid into every token, which
// is what extauthz compares with the {user_id} in /api/{user_id}/tasks.
import { betterAuth } from "better-auth";
import { admin, jwt, organization } from "better-auth/plugins";
import { extauthz, sessionClaims } from "@betterauth-extauthz/better-auth";
import { Pool } from "pg";

export const pool = new Pool({
  connectionString: process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres",
  max: 10,
});

const baseURL = process.env.BETTER_AUTH_URL ?? "http://127.0.0.1:3000";

/** Reads the uuid PostgreSQL assigned to a user (column default gen_random_uuid()). */
export async function uuidOf(userId: string): Promise<string> {
  const { rows } = await pool.query<{ uuid: string }>('SELECT uuid FROM "user" WHERE id = $1', [userId]);
  if (!rows[0]?.uuid) {
    throw new Error(`user ${userId} has no uuid: was schema.sql applied?`);
  }
  return rows[0].uuid;
}

/**
 * The user's organizations and roles, {orgId: "role,role"}, from the organization
 * plugin's member table, for extauthz's org rules. A snapshot: a role changed or a
 * membership removed shows in the next token (at most 15 minutes later).
 */
export async function orgsOf(userId: string): Promise<Record<string, string>> {
  const { rows } = await pool.query<{ organizationId: string; role: string }>(
    'SELECT "organizationId", role FROM member WHERE "userId" = $1',
    [userId],
  );
  return Object.fromEntries(rows.map((m) => [m.organizationId, m.role]));
}

function requireSecret(name: string): string {
  const v = process.env[name];
  if (!v || v.length < 32) {
    throw new Error(`${name} must hold the secret shared with extauthz (at least 32 characters)`);
  }
  return v;
}

export const auth = betterAuth({
  baseURL,
  secret: process.env.BETTER_AUTH_SECRET,
  database: pool,
  emailAndPassword: { enabled: true },
  user: {
    additionalFields: {
      // Read-only for Better Auth: the database assigns it, clients cannot set it.
      uuid: { type: "string", required: false, input: false },
    },
  },
  databaseHooks: {
    user: {
      create: {
        // Right after sign-up: read the uuid the database assigned and give the new
        // user their first task. App rows reference user.uuid, never user.id.
        after: async (user) => {
          const uuid = await uuidOf(user.id);
          await pool.query("INSERT INTO tasks (user_uuid, title) VALUES ($1, $2)", [uuid, "Welcome!"]);
        },
      },
    },
  },
  plugins: [
    // Bans and admin revocations (user.role, banned, banExpires in every token).
    admin(),
    // Organizations, members and roles; orgsOf puts them into the JWT.
    organization(),
    // Publishes sign-outs, revocations and bans to extauthz, which polls
    // /api/auth/extauthz/revocations with this secret (its revocation.secretFile).
    extauthz({ secret: requireSecret("EXTAUTHZ_FEED_SECRET") }),
    jwt({
      jwt: {
        // iss and aud default to the origin of baseURL; extauthz derives the same.
        expirationTime: "15m",
        // sid is what lets extauthz deny this token once its session is signed out.
        definePayload: async ({ user, session }) => ({
          ...user,
          ...sessionClaims(session),
          orgs: await orgsOf(user.id),
          uuid: typeof user.uuid === "string" && user.uuid ? user.uuid : await uuidOf(user.id),
        }),
      },
    }),
  ],
});
