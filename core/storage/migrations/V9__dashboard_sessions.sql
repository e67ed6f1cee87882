-- Schema version 9: dashboard sessions that end (bot/dashboard/access.py).

-- Each server's session epoch: every dashboard link and session carries the epoch it was made
-- in, and `/logs end-sessions` moves it on, so everything issued before stops working at once.
-- No row: epoch 0.
CREATE TABLE dashboard_epochs (
    guild_id INTEGER PRIMARY KEY,
    epoch    INTEGER NOT NULL
);

-- Links already exchanged for a session: a link opens one session only (a link copied from a
-- screen share or a browser history is worth nothing). Rows are dropped once the link expires.
CREATE TABLE dashboard_links_used (
    link_id    TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL   -- unix seconds
) WITHOUT ROWID;
