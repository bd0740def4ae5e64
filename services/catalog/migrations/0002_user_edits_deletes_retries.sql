-- Curated rows remember which fields a user edited (UpdateModel paths:
-- display_name, description, tags), so that a new version of the curated
-- list updates only the others.
ALTER TABLE models ADD COLUMN user_edited text[] NOT NULL DEFAULT '{}';

-- DeleteModel marks the row first, removes the model's files from the model
-- store, then deletes the row; a start finds marked rows and finishes them.
-- Marked rows are invisible to every read.
ALTER TABLE models ADD COLUMN deleting boolean NOT NULL DEFAULT false;

-- A preparation waiting for the Hub: the retry about to be made, when it is
-- due (microseconds since the epoch; 0: none) and the last error.
ALTER TABLE models ADD COLUMN preparation_retry_attempt integer NOT NULL DEFAULT 0;
ALTER TABLE models ADD COLUMN preparation_next_retry_us bigint NOT NULL DEFAULT 0;
ALTER TABLE models ADD COLUMN preparation_last_error text NOT NULL DEFAULT '';
