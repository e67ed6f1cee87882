-- Schema version 8: a quiz's guesses can be forgotten at its reveal (issue 23).
-- Under log_inputs 'hashed' and 'none' a guess is stored as an HMAC under its quiz's own
-- secret, and at the reveal the guesses and the secret are erased (the prompt too): a digest
-- of one word under a salt kept beside the database was reversed with a word list. NULL for
-- 'full' (guesses are kept as words) and for quizzes created before this version (their
-- guesses keep the old salted digest until they too are forgotten).
ALTER TABLE quizzes ADD COLUMN guess_secret BLOB;
