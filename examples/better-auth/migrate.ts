// Creates every table Better Auth needs for this configuration (including `jwks` for
// the jwt plugin and the current `session.token` column), then applies schema.sql.
// Forgetting this step is what produces "relation jwks does not exist" and
// "column token does not exist" at the first sign-in.
import { readFile } from "node:fs/promises";
import { getMigrations } from "better-auth/db/migration";
import { auth, pool } from "./auth.js";

// The app owns user.uuid (a real UUID column with a default, in schema.sql), so
// Better Auth's migration must not create it as a text column first.
const options = { ...auth.options, user: { ...auth.options.user, additionalFields: {} } };
const { toBeCreated, toBeAdded, runMigrations } = await getMigrations(options);
console.log(
  `better-auth: creating ${toBeCreated.map((t) => t.table).join(", ") || "no tables"}; ` +
    `adding columns to ${toBeAdded.map((t) => t.table).join(", ") || "no tables"}`,
);
await runMigrations();

const schema = await readFile(new URL("../schema.sql", import.meta.url), "utf8");
await pool.query(schema);
console.log("schema.sql applied");
await pool.end();
