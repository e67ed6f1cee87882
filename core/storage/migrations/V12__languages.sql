-- Schema version 12: languages (core/i18n.py). Each answer's row keeps the language it was
-- answered in ('' for rows from before, and for `tlm-bot ask`'s in-memory log it is the
-- --locale asked); each server may have a language set by its moderators (`/config language`)
-- for its public messages: NULL follows the server's own Discord language (guild_locale).
ALTER TABLE queries ADD COLUMN locale TEXT NOT NULL DEFAULT '';
ALTER TABLE guild_settings ADD COLUMN language TEXT;
