-- Schema version 6: moderators may force students' answers private (only the asker sees them)
-- or public, for a whole server (scope_id = the guild's id) or one channel; no row: each
-- student chooses with the commands' `private` option.

CREATE TABLE answer_visibility (
    guild_id  INTEGER NOT NULL,
    scope_id  INTEGER NOT NULL,
    mode      TEXT    NOT NULL CHECK (mode IN ('private', 'public')),
    PRIMARY KEY (guild_id, scope_id)
);
