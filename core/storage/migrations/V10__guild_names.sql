-- Schema version 10: each server's name as the bot last saw it, so pages that have no Discord
-- (the dashboard, also under `tlm-bot dashboard` after the term) can say which server they show.
-- A server's name is no personal data; it is replaced whenever the bot sees a new one.
CREATE TABLE guild_names (
    guild_id INTEGER PRIMARY KEY,
    name     TEXT NOT NULL,
    seen_at  TEXT NOT NULL       -- ISO 8601, UTC
);
