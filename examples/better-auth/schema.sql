-- The application's part of the schema. Apply it after Better Auth's own tables
-- exist (migrate.ts does both, in that order). Safe to run again.

-- The hybrid id: Better Auth's user.id stays a random string (the JWT's sub); the
-- application identifies users by this UUID, and every app table references it.
ALTER TABLE "user" ADD COLUMN IF NOT EXISTS uuid UUID UNIQUE NOT NULL DEFAULT gen_random_uuid();

CREATE TABLE IF NOT EXISTS tasks (
    id         BIGSERIAL PRIMARY KEY,
    user_uuid  UUID NOT NULL REFERENCES "user"(uuid) ON DELETE CASCADE,
    title      TEXT NOT NULL,
    done       BOOLEAN NOT NULL DEFAULT false,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS tasks_user_uuid ON tasks (user_uuid);
