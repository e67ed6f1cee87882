-- Schema version 3: what the instructor dashboard needs (bot/dashboard, core/dashboard_data.py).

-- Secrets the bot generates once and keeps: the dashboard's link-signing key when
-- TLM_DASHBOARD_SECRET is not set, so links survive a restart.
CREATE TABLE secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

-- A student's page reads that student's rows newest first, by command: with created_at and
-- command in the index it neither sorts them nor visits the table. Same leading columns as
-- V1's queries_user (/mydata, deletes), which it therefore replaces.
DROP INDEX queries_user;
CREATE INDEX queries_user ON queries (user_id, guild_id, created_at, command);

-- Hourly roll-ups of the query log, kept exact by triggers in the same transaction as the row
-- itself. Why: the overview of a 30-day window with 200,000 rows would otherwise group every
-- row on every page view (measured: seconds, benchmarks/RESULTS.md "Dashboard"); these tables
-- hold at most hours x (commands x statuses | students | latency values) rows. Rows of direct
-- messages (guild_id NULL) are not rolled up: the dashboard is per server.
CREATE TABLE dash_counts (
    guild_id INTEGER NOT NULL,
    hour     TEXT    NOT NULL,   -- 'YYYY-MM-DDTHH' (UTC), a prefix of queries.created_at
    command  TEXT    NOT NULL,
    status   TEXT    NOT NULL,
    feedback INTEGER NOT NULL,   -- queries.feedback, 0 for none
    n        INTEGER NOT NULL,
    PRIMARY KEY (guild_id, hour, command, status, feedback)
) WITHOUT ROWID;

CREATE TABLE dash_users (
    guild_id  INTEGER NOT NULL,
    hour      TEXT    NOT NULL,
    user_id   INTEGER NOT NULL,
    n         INTEGER NOT NULL,
    user_name TEXT    NOT NULL DEFAULT '',   -- latest non-empty display name in that hour
    PRIMARY KEY (guild_id, hour, user_id)
) WITHOUT ROWID;

-- total_ms histograms per hour ('YYYY-MM-DDTHH') and per day ('YYYY-MM-DD'): the value in
-- whole ms below 1 s, truncated to three significant digits above (under 1 % low), so percentiles
-- come from a few hundred rows per period instead of every query.
CREATE TABLE dash_latency (
    guild_id INTEGER NOT NULL,
    period   TEXT    NOT NULL,
    ms       INTEGER NOT NULL,
    n        INTEGER NOT NULL,
    PRIMARY KEY (guild_id, period, ms)
) WITHOUT ROWID;

CREATE TRIGGER queries_dash_insert AFTER INSERT ON queries BEGIN
    INSERT INTO dash_counts (guild_id, hour, command, status, feedback, n)
    SELECT NEW.guild_id, substr(NEW.created_at, 1, 13), NEW.command, NEW.status,
           coalesce(NEW.feedback, 0), 1 WHERE NEW.guild_id IS NOT NULL
    ON CONFLICT DO UPDATE SET n = n + 1;
    INSERT INTO dash_users (guild_id, hour, user_id, n, user_name)
    SELECT NEW.guild_id, substr(NEW.created_at, 1, 13), NEW.user_id, 1, NEW.user_name
    WHERE NEW.guild_id IS NOT NULL
    ON CONFLICT DO UPDATE SET n = n + 1,
        user_name = CASE WHEN excluded.user_name != '' THEN excluded.user_name ELSE user_name END;
    INSERT INTO dash_latency (guild_id, period, ms, n)
    SELECT NEW.guild_id, p.period, CASE WHEN CAST(round(NEW.total_ms) AS INTEGER) < 1000 THEN CAST(round(NEW.total_ms) AS INTEGER) ELSE CAST(round(NEW.total_ms) AS INTEGER) / CAST('1' || substr('000000000000', 1, length(CAST(round(NEW.total_ms) AS INTEGER)) - 3) AS INTEGER) * CAST('1' || substr('000000000000', 1, length(CAST(round(NEW.total_ms) AS INTEGER)) - 3) AS INTEGER) END, 1
    FROM (SELECT substr(NEW.created_at, 1, 13) AS period UNION ALL
          SELECT substr(NEW.created_at, 1, 10)) AS p
    WHERE NEW.guild_id IS NOT NULL AND NEW.total_ms IS NOT NULL
    ON CONFLICT DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER queries_dash_delete AFTER DELETE ON queries BEGIN
    UPDATE dash_counts SET n = n - 1
    WHERE guild_id = OLD.guild_id AND hour = substr(OLD.created_at, 1, 13)
      AND command = OLD.command AND status = OLD.status AND feedback = coalesce(OLD.feedback, 0);
    UPDATE dash_users SET n = n - 1
    WHERE guild_id = OLD.guild_id AND hour = substr(OLD.created_at, 1, 13) AND user_id = OLD.user_id;
    UPDATE dash_latency SET n = n - 1
    WHERE guild_id = OLD.guild_id AND OLD.total_ms IS NOT NULL
      AND period IN (substr(OLD.created_at, 1, 13), substr(OLD.created_at, 1, 10))
      AND ms = CASE WHEN CAST(round(OLD.total_ms) AS INTEGER) < 1000 THEN CAST(round(OLD.total_ms) AS INTEGER) ELSE CAST(round(OLD.total_ms) AS INTEGER) / CAST('1' || substr('000000000000', 1, length(CAST(round(OLD.total_ms) AS INTEGER)) - 3) AS INTEGER) * CAST('1' || substr('000000000000', 1, length(CAST(round(OLD.total_ms) AS INTEGER)) - 3) AS INTEGER) END;
    DELETE FROM dash_counts WHERE guild_id = OLD.guild_id
      AND hour = substr(OLD.created_at, 1, 13) AND n <= 0;
    DELETE FROM dash_users WHERE guild_id = OLD.guild_id
      AND hour = substr(OLD.created_at, 1, 13) AND n <= 0;
    DELETE FROM dash_latency WHERE guild_id = OLD.guild_id
      AND period IN (substr(OLD.created_at, 1, 13), substr(OLD.created_at, 1, 10)) AND n <= 0;
END;

CREATE TRIGGER queries_dash_update AFTER UPDATE OF guild_id, created_at, command, status, feedback, user_id, user_name, total_ms ON queries BEGIN
    UPDATE dash_counts SET n = n - 1
    WHERE guild_id = OLD.guild_id AND hour = substr(OLD.created_at, 1, 13)
      AND command = OLD.command AND status = OLD.status AND feedback = coalesce(OLD.feedback, 0);
    UPDATE dash_users SET n = n - 1
    WHERE guild_id = OLD.guild_id AND hour = substr(OLD.created_at, 1, 13) AND user_id = OLD.user_id;
    UPDATE dash_latency SET n = n - 1
    WHERE guild_id = OLD.guild_id AND OLD.total_ms IS NOT NULL
      AND period IN (substr(OLD.created_at, 1, 13), substr(OLD.created_at, 1, 10))
      AND ms = CASE WHEN CAST(round(OLD.total_ms) AS INTEGER) < 1000 THEN CAST(round(OLD.total_ms) AS INTEGER) ELSE CAST(round(OLD.total_ms) AS INTEGER) / CAST('1' || substr('000000000000', 1, length(CAST(round(OLD.total_ms) AS INTEGER)) - 3) AS INTEGER) * CAST('1' || substr('000000000000', 1, length(CAST(round(OLD.total_ms) AS INTEGER)) - 3) AS INTEGER) END;
    DELETE FROM dash_counts WHERE guild_id = OLD.guild_id
      AND hour = substr(OLD.created_at, 1, 13) AND n <= 0;
    DELETE FROM dash_users WHERE guild_id = OLD.guild_id
      AND hour = substr(OLD.created_at, 1, 13) AND n <= 0;
    DELETE FROM dash_latency WHERE guild_id = OLD.guild_id
      AND period IN (substr(OLD.created_at, 1, 13), substr(OLD.created_at, 1, 10)) AND n <= 0;
    INSERT INTO dash_counts (guild_id, hour, command, status, feedback, n)
    SELECT NEW.guild_id, substr(NEW.created_at, 1, 13), NEW.command, NEW.status,
           coalesce(NEW.feedback, 0), 1 WHERE NEW.guild_id IS NOT NULL
    ON CONFLICT DO UPDATE SET n = n + 1;
    INSERT INTO dash_users (guild_id, hour, user_id, n, user_name)
    SELECT NEW.guild_id, substr(NEW.created_at, 1, 13), NEW.user_id, 1, NEW.user_name
    WHERE NEW.guild_id IS NOT NULL
    ON CONFLICT DO UPDATE SET n = n + 1,
        user_name = CASE WHEN excluded.user_name != '' THEN excluded.user_name ELSE user_name END;
    INSERT INTO dash_latency (guild_id, period, ms, n)
    SELECT NEW.guild_id, p.period, CASE WHEN CAST(round(NEW.total_ms) AS INTEGER) < 1000 THEN CAST(round(NEW.total_ms) AS INTEGER) ELSE CAST(round(NEW.total_ms) AS INTEGER) / CAST('1' || substr('000000000000', 1, length(CAST(round(NEW.total_ms) AS INTEGER)) - 3) AS INTEGER) * CAST('1' || substr('000000000000', 1, length(CAST(round(NEW.total_ms) AS INTEGER)) - 3) AS INTEGER) END, 1
    FROM (SELECT substr(NEW.created_at, 1, 13) AS period UNION ALL
          SELECT substr(NEW.created_at, 1, 10)) AS p
    WHERE NEW.guild_id IS NOT NULL AND NEW.total_ms IS NOT NULL
    ON CONFLICT DO UPDATE SET n = n + 1;
END;

-- Rows logged before this migration.
INSERT INTO dash_counts (guild_id, hour, command, status, feedback, n)
SELECT guild_id, substr(created_at, 1, 13), command, status, coalesce(feedback, 0), COUNT(*)
FROM queries WHERE guild_id IS NOT NULL GROUP BY 1, 2, 3, 4, 5;

INSERT INTO dash_users (guild_id, hour, user_id, n, user_name)
SELECT guild_id, substr(created_at, 1, 13), user_id, COUNT(*), max(user_name)
FROM queries WHERE guild_id IS NOT NULL GROUP BY 1, 2, 3;

INSERT INTO dash_latency (guild_id, period, ms, n)
SELECT guild_id, period, ms, COUNT(*) FROM (
    SELECT guild_id, substr(created_at, 1, 13) AS period, CASE WHEN CAST(round(total_ms) AS INTEGER) < 1000 THEN CAST(round(total_ms) AS INTEGER) ELSE CAST(round(total_ms) AS INTEGER) / CAST('1' || substr('000000000000', 1, length(CAST(round(total_ms) AS INTEGER)) - 3) AS INTEGER) * CAST('1' || substr('000000000000', 1, length(CAST(round(total_ms) AS INTEGER)) - 3) AS INTEGER) END AS ms
    FROM queries WHERE guild_id IS NOT NULL AND total_ms IS NOT NULL
    UNION ALL
    SELECT guild_id, substr(created_at, 1, 10), CASE WHEN CAST(round(total_ms) AS INTEGER) < 1000 THEN CAST(round(total_ms) AS INTEGER) ELSE CAST(round(total_ms) AS INTEGER) / CAST('1' || substr('000000000000', 1, length(CAST(round(total_ms) AS INTEGER)) - 3) AS INTEGER) * CAST('1' || substr('000000000000', 1, length(CAST(round(total_ms) AS INTEGER)) - 3) AS INTEGER) END
    FROM queries WHERE guild_id IS NOT NULL AND total_ms IS NOT NULL)
GROUP BY 1, 2, 3;
