-- Schema version 3: class quizzes (/quiz mask, /quiz next) and the students' guesses.
-- A quiz is open while closed_at IS NULL; at most one open quiz per channel (partial index).
-- The prompt is the instructor's text, kept in full: the reveal is recomputed from it after a
-- restart. A guess is stored under log_inputs: the normalised word ('full') or a salted sha256
-- of it ('hashed' and 'none'; the quiz cannot count guesses without something to compare).

CREATE TABLE quizzes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id    INTEGER NOT NULL,
    channel_id  INTEGER NOT NULL,
    message_id  INTEGER,                 -- the card, set once it is posted
    kind        TEXT    NOT NULL CHECK (kind IN ('mask', 'next')),
    prompt      TEXT    NOT NULL,
    seconds     INTEGER NOT NULL CHECK (seconds >= 1),
    show_names  INTEGER NOT NULL DEFAULT 0 CHECK (show_names IN (0, 1)),
    creator_id  INTEGER NOT NULL,
    created_at  TEXT    NOT NULL,
    ends_at     TEXT    NOT NULL,
    closed_at   TEXT
);

CREATE UNIQUE INDEX quizzes_one_open_per_channel ON quizzes (channel_id) WHERE closed_at IS NULL;
CREATE INDEX quizzes_guild ON quizzes (guild_id, created_at);

CREATE TABLE quiz_guesses (
    quiz_id    INTEGER NOT NULL REFERENCES quizzes (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL,
    guess      TEXT    NOT NULL,         -- normalised word, or its salted sha256 (log_inputs)
    user_name  TEXT    NOT NULL DEFAULT '',  -- display name, only with log_inputs = 'full'
    guessed_at TEXT    NOT NULL,
    PRIMARY KEY (quiz_id, user_id)
);

-- /mydata delete: a user's guesses in one guild.
CREATE INDEX quiz_guesses_user ON quiz_guesses (user_id);
