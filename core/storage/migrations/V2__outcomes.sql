-- Schema version 2: the outcome vocabulary of core/outcomes.py (Status), the member's display
-- name at query time (kept only where log_inputs = 'full'), and 👍/👎 feedback on an answer.
-- SQLite cannot alter a CHECK constraint, so the table is rebuilt; ids are kept.

CREATE TABLE queries_v2 (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at     TEXT    NOT NULL,
    guild_id       INTEGER,            -- NULL for direct messages
    channel_id     INTEGER,
    user_id        INTEGER NOT NULL,
    user_name      TEXT    NOT NULL DEFAULT '',     -- display name, only with log_inputs = full
    command        TEXT    NOT NULL,
    options        TEXT    NOT NULL DEFAULT '{}',   -- JSON object; free-text values obey log_inputs
    input_text     TEXT    NOT NULL DEFAULT '',     -- full, sha256 hex or '' (log_inputs)
    status         TEXT    NOT NULL
        CHECK (status IN ('ok', 'user_error', 'refused', 'cooldown', 'paused', 'overloaded',
                          'unavailable', 'timeout', 'failed', 'expired')),
    output_summary TEXT    NOT NULL DEFAULT '',
    error          TEXT    NOT NULL DEFAULT '',
    model_id       TEXT    NOT NULL DEFAULT '',
    queue_ms       REAL,
    inference_ms   REAL,
    total_ms       REAL,
    feedback       INTEGER CHECK (feedback IS NULL OR feedback IN (-1, 1))
);

INSERT INTO queries_v2 (id, created_at, guild_id, channel_id, user_id, command, options,
                        input_text, status, output_summary, error, model_id, queue_ms,
                        inference_ms, total_ms)
SELECT id, created_at, guild_id, channel_id, user_id, command, options, input_text, status,
       output_summary, error, model_id, queue_ms, inference_ms, total_ms
FROM queries;

DROP TABLE queries;
ALTER TABLE queries_v2 RENAME TO queries;

CREATE INDEX queries_guild_time ON queries (guild_id, created_at);
CREATE INDEX queries_user ON queries (user_id, guild_id);
CREATE INDEX queries_guild_command_time ON queries (guild_id, command, created_at);
