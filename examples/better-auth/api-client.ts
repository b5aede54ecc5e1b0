// The frontend side: get a JWT from Better Auth, send it as a Bearer token to the API
// behind Envoy + extauthz, refresh it shortly before it expires, and on a 401 fetch a
// new one and retry once.
import { createAuthClient } from "better-auth/client";
import { jwtClient } from "better-auth/client/plugins";

export const authClient = createAuthClient({
  baseURL: process.env.BETTER_AUTH_URL ?? "http://127.0.0.1:3000",
  plugins: [jwtClient()],
});

/** Refresh this long before exp, so a token never expires in flight. */
const REFRESH_MARGIN_MS = 60_000;

let cached: { token: string; expiresAt: number } | null = null;

function expiryOf(token: string): number {
  const payload = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString("utf8")) as { exp?: number };
  if (typeof payload.exp !== "number") throw new Error("token has no exp");
  return payload.exp * 1000;
}

/** Returns a token valid for at least REFRESH_MARGIN_MS, fetching one when needed. */
export async function getToken(force = false): Promise<string> {
  if (!force && cached && cached.expiresAt - Date.now() > REFRESH_MARGIN_MS) {
    return cached.token;
  }
  // GET /api/auth/token with the session cookie.
  const { data, error } = await authClient.token();
  if (error || !data?.token) {
    cached = null;
    throw new Error(`not signed in: ${error?.message ?? "no token"}`);
  }
  cached = { token: data.token, expiresAt: expiryOf(data.token) };
  return data.token;
}

/** fetch() for the API: attaches the Bearer token, and on a 401 refetches it once. */
export async function apiFetch(input: string | URL, init: RequestInit = {}): Promise<Response> {
  const send = async (token: string) => {
    const headers = new Headers(init.headers);
    headers.set("Authorization", `Bearer ${token}`);
    return fetch(input, { ...init, headers });
  };
  const first = await send(await getToken());
  if (first.status !== 401) return first;
  // The key may have rotated or the token expired early: one fresh try, no loop.
  return send(await getToken(true));
}

export interface Task {
  id: number;
  title: string;
  done: boolean;
}

/** Lists the signed-in user's tasks; userUuid is the `uuid` claim / user.uuid. */
export async function listTasks(apiBase: string, userUuid: string): Promise<Task[]> {
  const res = await apiFetch(`${apiBase}/api/${encodeURIComponent(userUuid)}/tasks`);
  if (!res.ok) throw new Error(`GET tasks: ${res.status}`);
  const body = (await res.json()) as { tasks: Task[] };
  return body.tasks;
}
