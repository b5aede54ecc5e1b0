// A Better Auth server plugin that records every session that ends early (sign-out,
// revoke-session(s), revoke-other-sessions, admin revocations, bans) and every ban
// and unban, in a table of its own, and serves them to extauthz at
// GET /api/auth/extauthz/revocations?since=<cursor>, behind a shared secret.
// extauthz polls it (about once a second per replica) and denies the JWTs of
// revoked sessions and banned users within that bound, with no call per request.
import { timingSafeEqual } from "node:crypto";
import type { BetterAuthPlugin, Session, User } from "better-auth";
import { APIError, createAuthEndpoint, createAuthMiddleware } from "better-auth/api";

export interface ExtauthzOptions {
  /** The secret extauthz presents as a Bearer token; at least 32 characters. */
  secret: string;
  /**
   * How long entries are kept, in milliseconds: longer than any JWT lives
   * (the jwt plugin's default is 15 minutes). Default one hour.
   */
  retentionMs?: number;
}

/** The model (table) the plugin creates through Better Auth's migrations. */
export const MODEL = "extauthzRevocation";

/**
 * Entries a response holds at most; `more` says another page follows. More than
 * this many revocations within OVERLAP_MS would be read again rather than past.
 */
export const PAGE_SIZE = 10000;

/**
 * How far before the cursor each poll looks again. Entries are ordered by the
 * clock of the Better Auth instance that wrote them; replicas whose clocks differ
 * by less than this, and writes that commit late, are not missed. Replaying an
 * entry is harmless: extauthz applies them in order.
 */
export const OVERLAP_MS = 5000;

type Kind = "session" | "ban" | "unban";

interface Entry {
  kind: Kind;
  sessionId?: string;
  userId?: string;
  at: number;
  until?: number;
}

/**
 * Adds the session id to the JWT, which is what lets extauthz see that the
 * session behind a token ended. Use it in the jwt plugin's definePayload:
 * `definePayload: ({ user, session }) => ({ ...user, ...sessionClaims(session) })`.
 * The session token itself is a credential and never goes into a JWT.
 */
export function sessionClaims(session: { id: string }): { sid: string } {
  return { sid: session.id };
}

export const extauthz = (options: ExtauthzOptions) => {
  if (!options?.secret || options.secret.length < 32) {
    throw new Error("extauthz plugin: secret must be at least 32 characters");
  }
  const secret = Buffer.from(options.secret);
  const retentionMs = options.retentionMs ?? 60 * 60 * 1000;
  // The adapter of the running instance, set by init.
  let record: (e: Entry) => Promise<void> = async () => {};

  return {
    id: "extauthz",
    schema: {
      [MODEL]: {
        fields: {
          kind: { type: "string", required: true },
          sessionId: { type: "string", required: false },
          userId: { type: "string", required: false, index: true },
          at: { type: "number", required: true, bigint: true, index: true },
          until: { type: "number", required: false, bigint: true },
        },
      },
    },
    init(ctx) {
      record = async (e) => {
        try {
          await ctx.adapter.create({ model: MODEL, data: { ...e }, forceAllowId: false });
        } catch (err) {
          // A lost entry would leave a signed-out JWT valid until it expires: say so.
          ctx.logger.error("extauthz: could not record a revocation", err);
          throw err;
        }
      };
      return {
        options: {
          databaseHooks: {
            session: {
              delete: {
                after: async (session: Session) => {
                  await record({ kind: "session", sessionId: session.id, userId: session.userId, at: Date.now() });
                },
              },
              update: {
                // preserveSessionInDatabase ends a session by setting expiresAt.
                after: async (session: Session) => {
                  const ends = new Date(session.expiresAt).getTime();
                  if (ends <= Date.now()) {
                    await record({ kind: "session", sessionId: session.id, userId: session.userId, at: Date.now() });
                  }
                },
              },
            },
            user: {
              update: {
                after: async (user: User & { banned?: boolean | null; banExpires?: Date | string | null }) => {
                  if (user.banned === true) {
                    const until = user.banExpires ? new Date(user.banExpires).getTime() : 0;
                    await record({ kind: "ban", userId: user.id, at: Date.now(), until });
                  }
                },
              },
            },
          },
        },
      };
    },
    hooks: {
      after: [
        {
          // The admin plugin lifts a ban by setting banned to false; only that
          // endpoint's updates are unbans (every other update of a user that is not
          // banned would otherwise add one).
          matcher: (ctx) => ctx.path === "/admin/unban-user",
          handler: createAuthMiddleware(async (ctx) => {
            const userId = (ctx.body as { userId?: unknown } | undefined)?.userId;
            if (typeof userId === "string" && userId) {
              await record({ kind: "unban", userId, at: Date.now() });
            }
          }),
        },
      ],
    },
    endpoints: {
      extauthzRevocations: createAuthEndpoint(
        "/extauthz/revocations",
        { method: "GET", metadata: { isAction: false } },
        async (ctx) => {
          const auth = ctx.request?.headers.get("authorization") ?? ctx.headers?.get("authorization") ?? "";
          const got = Buffer.from(auth.startsWith("Bearer ") ? auth.slice(7) : "");
          if (got.length !== secret.length || !timingSafeEqual(got, secret)) {
            throw new APIError("UNAUTHORIZED", { message: "extauthz: bad secret" });
          }
          const raw = ctx.query?.since;
          const since = typeof raw === "string" && /^[0-9]{1,16}$/.test(raw) ? Number(raw) : 0;
          const now = Date.now();
          const adapter = ctx.context.adapter;
          await adapter.deleteMany({ model: MODEL, where: [{ field: "at", operator: "lt", value: now - retentionMs }] });
          const rows = (await adapter.findMany({
            model: MODEL,
            where: [{ field: "at", operator: "gte", value: Math.max(0, since - OVERLAP_MS) }],
            sortBy: { field: "at", direction: "asc" },
            limit: PAGE_SIZE,
          })) as Array<Entry & { id: string }>;
          const entries = rows.map((r) => ({
            kind: r.kind,
            sessionId: r.sessionId ?? undefined,
            userId: r.userId ?? undefined,
            at: Number(r.at),
            until: r.until == null ? undefined : Number(r.until),
          }));
          const last = entries.length > 0 ? entries[entries.length - 1].at : since;
          return ctx.json({ cursor: String(Math.max(last, since)), entries, more: rows.length === PAGE_SIZE });
        },
      ),
    },
  } satisfies BetterAuthPlugin;
};
