-- Schema version 1: the query log and moderator settings.
-- Timestamps are UTC text 'YYYY-MM-DDTHH:MM:SS.ffffffZ' (fixed width, so text order = time order).

CREATE TABLE queries (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at     TEXT    NOT NULL,
    guild_id       INTEGER,            -- NULL for direct messages
    channel_id     INTEGER,
    user_id        INTEGER NOT NULL,
    command        TEXT    NOT NULL,
    options        TEXT    NOT NULL DEFAULT '{}',   -- JSON object
    input_text     TEXT    NOT NULL DEFAULT '',     -- full, sha256 hex or '' (log_inputs)
    status         TEXT    NOT NULL
        CHECK (status IN ('ok', 'user_error', 'refused', 'overloaded', 'failed', 'expired')),
    output_summary TEXT    NOT NULL DEFAULT '',
    error          TEXT    NOT NULL DEFAULT '',
    model_id       TEXT    NOT NULL DEFAULT '',
    queue_ms       REAL,
    inference_ms   REAL,
    total_ms       REAL
);

-- Every instructor query is scoped to one guild and usually to a time range.
CREATE INDEX queries_guild_time ON queries (guild_id, created_at);
-- /mydata delete and per-student views.
CREATE INDEX queries_user ON queries (user_id, guild_id);

CREATE TABLE guild_settings (
    guild_id           INTEGER PRIMARY KEY,
    instructor_role_id INTEGER,
    paused             INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    retention_days     INTEGER CHECK (retention_days IS NULL OR retention_days >= 1)  -- NULL = default
);

-- scope 'guild' uses scope_id = guild_id; command '*' means every command.
CREATE TABLE rules (
    guild_id INTEGER NOT NULL,
    scope    TEXT    NOT NULL CHECK (scope IN ('guild', 'channel', 'role')),
    scope_id INTEGER NOT NULL,
    command  TEXT    NOT NULL,
    allow    INTEGER NOT NULL CHECK (allow IN (0, 1)),
    PRIMARY KEY (guild_id, scope, scope_id, command)
);

CREATE TABLE cooldowns (
    guild_id    INTEGER NOT NULL,
    command     TEXT    NOT NULL,
    uses        INTEGER NOT NULL CHECK (uses >= 1),
    per_seconds REAL    NOT NULL CHECK (per_seconds > 0),
    PRIMARY KEY (guild_id, command)
);
