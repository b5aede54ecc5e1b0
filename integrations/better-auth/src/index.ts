// A Better Auth server plugin that records every session that ends early (sign-out,
// revoke-session(s), revoke-other-sessions, admin revocations, bans) and every ban
// and unban, in a table of its own, and serves them to extauthz at
// GET /api/auth/extauthz/revocations?since=<cursor>, behind a shared secret.
// extauthz polls it (about once a second per replica) and denies the JWTs of
// revoked sessions and banned users within that bound, with no call per request.
import { createHash, timingSafeEqual } from "node:crypto";
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

/** Longest id recorded; Better Auth's are 32 characters. Longer ones are refused. */
export const MAX_ID_LENGTH = 255;

/** Requests per second the feed answers before Better Auth's rate limit applies. */
export const FEED_RATE_LIMIT = 1000;

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
  const digest = (v: string) => createHash("sha256").update(v).digest();
  const secret = digest(options.secret);
  const retentionMs = options.retentionMs ?? 60 * 60 * 1000;
  // The adapter of the running instance, set by init.
  let record: (e: Entry) => Promise<void> = async () => {};
  // Pruning runs at most once a minute, not on every poll of every replica.
  let prunedAt = 0;

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
      // Sessions kept only in secondary storage pass no database hook: their
      // sign-outs could not be published, and their JWTs would stay valid.
      if (ctx.options.secondaryStorage && !ctx.options.session?.storeSessionInDatabase) {
        throw new Error("extauthz plugin: sessions in secondaryStorage need session.storeSessionInDatabase: true");
      }
      record = async (e) => {
        if ((e.sessionId?.length ?? 0) > MAX_ID_LENGTH || (e.userId?.length ?? 0) > MAX_ID_LENGTH) {
          ctx.logger.error("extauthz: id too long to record", { kind: e.kind });
          return;
        }
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
          // A ban is lifted by the admin plugin's unban-user, or by update-user
          // setting banned to false. Only a request that succeeded counts: after
          // hooks also run for one that was refused.
          matcher: (ctx) => ctx.path === "/admin/unban-user" || ctx.path === "/admin/update-user",
          handler: createAuthMiddleware(async (ctx) => {
            const returned = ctx.context.returned as { user?: { id?: unknown; banned?: unknown } } | Error | undefined;
            if (!returned || returned instanceof Error || typeof returned !== "object") return;
            const user = returned.user;
            if (!user || typeof user.id !== "string" || user.banned === true) return;
            const body = ctx.body as { data?: { banned?: unknown } } | undefined;
            if (ctx.path === "/admin/update-user" && body?.data?.banned !== false) return;
            const at = Date.now();
            await record({ kind: "unban", userId: user.id, at });
            await ctx.context.adapter.deleteMany({
              model: MODEL,
              where: [
                { field: "kind", operator: "eq", value: "ban" },
                { field: "userId", operator: "eq", value: user.id, connector: "AND" },
                { field: "at", operator: "lt", value: at, connector: "AND" },
              ],
            });
          }),
        },
      ],
    },
    rateLimit: [
      {
        // Every extauthz replica polls about once a second, often from one address.
        pathMatcher: (path: string) => path === "/extauthz/revocations",
        window: 1,
        max: FEED_RATE_LIMIT,
      },
    ],
    endpoints: {
      extauthzRevocations: createAuthEndpoint(
        "/extauthz/revocations",
        { method: "GET", metadata: { isAction: false } },
        async (ctx) => {
          const auth = ctx.request?.headers.get("authorization") ?? ctx.headers?.get("authorization") ?? "";
          // Comparing digests takes the same time whatever the length presented.
          const got = digest(auth.startsWith("Bearer ") ? auth.slice(7) : "");
          if (!timingSafeEqual(got, secret)) {
            throw new APIError("UNAUTHORIZED", { message: "extauthz: bad secret" });
          }
          // The cursor is the `at` of the last entry served; "<at>!" follows a full
          // page and is read without the overlap, so that a burst larger than a page
          // cannot pin the cursor.
          const raw = typeof ctx.query?.since === "string" ? ctx.query.since : "";
          const m = /^([0-9]{1,16})(!?)$/.exec(raw);
          const since = m ? Number(m[1]) : 0;
          const from = m?.[2] === "!" ? since : Math.max(0, since - OVERLAP_MS);
          const now = Date.now();
          const adapter = ctx.context.adapter;
          // Revoked sessions and unbans outlive every JWT after retentionMs; bans stay
          // until lifted (an unban deletes them) or long over, so that a replica that
          // starts later still learns of them.
          if (now - prunedAt > 60_000) {
            prunedAt = now;
            await adapter.deleteMany({
              model: MODEL,
              where: [
                { field: "at", operator: "lt", value: now - retentionMs },
                { field: "kind", operator: "ne", value: "ban", connector: "AND" },
              ],
            });
            await adapter.deleteMany({
              model: MODEL,
              where: [
                { field: "kind", operator: "eq", value: "ban" },
                { field: "until", operator: "gt", value: 0, connector: "AND" },
                { field: "until", operator: "lt", value: now - retentionMs, connector: "AND" },
              ],
            });
          }
          const rows = (await adapter.findMany({
            model: MODEL,
            where: [{ field: "at", operator: "gte", value: from }],
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
          const more = rows.length === PAGE_SIZE;
          // A full page whose entries all share one millisecond cannot advance:
          // say so (extauthz then counts the poll as failed) rather than loop.
          const cursor = String(Math.max(last, since)) + (more ? "!" : "");
          return ctx.json({ cursor, entries, more });
        },
      ),
    },
  } satisfies BetterAuthPlugin;
};
