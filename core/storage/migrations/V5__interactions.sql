-- Schema version 5: the Discord interaction each row answers. A button under an answer carries
-- that id in its custom_id (it fits Discord's 100 characters, the row's own id is not known
-- until the row is written after the reply), so feedback finds its row after a restart, and
-- the id's snowflake timestamp says how old the button is.

ALTER TABLE queries ADD COLUMN interaction_id INTEGER;
CREATE UNIQUE INDEX queries_interaction ON queries (interaction_id)
    WHERE interaction_id IS NOT NULL;
