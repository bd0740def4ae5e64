ALTER TABLE models ADD COLUMN tags text[] NOT NULL DEFAULT '{}';
INSERT INTO applications (note) VALUES ('0010 ran; quotes '' ; and \ survive');
