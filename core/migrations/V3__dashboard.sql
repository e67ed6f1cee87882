-- Schema version 3: secrets the bot generates once and keeps (the dashboard's link-signing key
-- when TLM_DASHBOARD_SECRET is not set), so links survive a restart.

CREATE TABLE secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
