-- Version 3: enrollment tokens and key rotation.
--
-- An agent added with `agent add --token` has an empty fingerprint until it
-- enrolls: the server accepts no key for it (auth.Verifier refuses an empty
-- fingerprint). pending_fingerprint is the next key announced during a
-- rotation, accepted besides the current one until a connection proves it;
-- empty when no rotation is under way.
--
-- enroll_tokens keeps one-time enrollment tokens: the public id, the SHA-256
-- hash of the secret (never the secret), the expiry and when it was used.
-- A token goes with its agent.

ALTER TABLE agents ADD COLUMN pending_fingerprint TEXT NOT NULL DEFAULT '';

CREATE TABLE enroll_tokens (
    id          INTEGER PRIMARY KEY,
    token_id    TEXT    NOT NULL UNIQUE,
    agent_id    INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    secret_hash BLOB    NOT NULL CHECK (length(secret_hash) = 32),
    created_at  TEXT    NOT NULL,
    expires_at  TEXT    NOT NULL,
    used_at     TEXT -- NULL until the token is used
) STRICT;

CREATE INDEX enroll_tokens_agent_id ON enroll_tokens (agent_id);
