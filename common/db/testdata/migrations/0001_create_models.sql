-- A table created without IF NOT EXISTS: applying this twice would fail.
CREATE TABLE models (
  id bigserial PRIMARY KEY,
  name text NOT NULL UNIQUE,
  note text
);
