-- Schema version 11 (renumber on merge if another V11 lands first): a full-text index of the
-- query log's input_text, so the dashboard's text search reads the index instead of scanning
-- every row of a class (benchmarks/RESULTS.md, "Dashboard").
--
-- An external-content FTS5 table: it stores only the index, the text stays in `queries`, and
-- the triggers keep the two in step, so a row deleted by /mydata delete, the retention purge or
-- a server's erasure leaves nothing behind in the index either. The trigram tokenizer matches
-- any substring of three characters or more, case-insensitively, like the `instr` search it
-- narrows (core/storage/querylog/reads.py keeps that exact test on the rows found).
CREATE VIRTUAL TABLE queries_text USING fts5(
    input_text, content = 'queries', content_rowid = 'id', tokenize = 'trigram'
);

CREATE TRIGGER queries_text_insert AFTER INSERT ON queries BEGIN
    INSERT INTO queries_text (rowid, input_text) VALUES (new.id, new.input_text);
END;

CREATE TRIGGER queries_text_delete AFTER DELETE ON queries BEGIN
    INSERT INTO queries_text (queries_text, rowid, input_text)
        VALUES ('delete', old.id, old.input_text);
END;

CREATE TRIGGER queries_text_update AFTER UPDATE OF input_text ON queries BEGIN
    INSERT INTO queries_text (queries_text, rowid, input_text)
        VALUES ('delete', old.id, old.input_text);
    INSERT INTO queries_text (rowid, input_text) VALUES (new.id, new.input_text);
END;

-- The rows already logged.
INSERT INTO queries_text (queries_text) VALUES ('rebuild');
