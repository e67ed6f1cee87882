-- Schema version 7: the command tree last registered with Discord, per scope, so `tlm-bot run`
-- syncs only when the tree changed (Discord rate-limits syncs; a global one takes up to an hour
-- to spread). See core/sync_state.py.
CREATE TABLE command_sync (
    scope       TEXT PRIMARY KEY,   -- 'global' or 'guild:<id>'
    tree_sha256 TEXT NOT NULL,      -- over the application id and the synced JSON
    synced_at   TEXT NOT NULL       -- ISO 8601, UTC
);
