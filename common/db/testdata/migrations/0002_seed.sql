-- Exactly-once check: every run of this file adds a row.
CREATE TABLE applications (note text NOT NULL);
INSERT INTO applications (note) VALUES ('0002 ran');
-- Widen the window in which a concurrent migrator would interfere.
SELECT pg_sleep(0.2);
