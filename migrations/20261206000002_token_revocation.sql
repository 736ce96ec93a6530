-- Token revocation (contract §4.2). A password change revokes every token issued before it: tokens
-- whose `iat` (epoch seconds) is below the user's `tokens_valid_from` are refused. A logout revokes
-- the one token it was called with: its SHA-256 is kept until the token would have expired anyway.
ALTER TABLE users ADD COLUMN tokens_valid_from bigint NOT NULL DEFAULT 0;

CREATE TABLE revoked_tokens (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    CONSTRAINT revoked_tokens_hash_length CHECK (octet_length(token_hash) = 32)
);

CREATE INDEX revoked_tokens_expires_at_idx ON revoked_tokens (expires_at);
