// Serves Better Auth at $BETTER_AUTH_URL (default http://127.0.0.1:3000), on $HOST:$PORT.
import { createServer } from "node:http";
import { toNodeHandler } from "better-auth/node";
import { auth, pool } from "./auth.js";

const host = process.env.HOST ?? "127.0.0.1";
const port = Number(process.env.PORT ?? 3000);
const handler = toNodeHandler(auth);

const server = createServer((req, res) => {
  if (req.url === "/healthz") {
    res.writeHead(200).end("ok");
    return;
  }
  void handler(req, res);
});
server.listen(port, host, () => console.log(`better-auth on http://${host}:${port}`));

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => server.close(() => void pool.end().then(() => process.exit(0))));
}
