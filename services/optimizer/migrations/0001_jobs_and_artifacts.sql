-- The optimizer schema: optimization jobs, the request ids bound to them,
-- and finished artifacts. Applied by common/db's migration runner with
-- search_path set to the optimizer schema. Jobs and artifacts are stored
-- whole as the API's JSON (hangar.v1.OptimizationJob / Artifact), with the
-- fields that are queried in columns.

CREATE TABLE jobs (
  name           text PRIMARY KEY,
  model          text NOT NULL,
  -- hangar.v1.JobState number.
  state          smallint NOT NULL CHECK (state BETWEEN 1 AND 5),
  source_sha256  text NOT NULL,
  -- "<source_sha256>-<engine>-<quantization>": the artifact directory name.
  artifact_key   text NOT NULL,
  source_path    text NOT NULL,
  output_path    text NOT NULL,
  job            jsonb NOT NULL,
  update_time    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_model ON jobs (model, name);
CREATE INDEX jobs_unfinished ON jobs (artifact_key) WHERE state IN (1, 2);

CREATE TABLE requests (
  request_id   text PRIMARY KEY,
  job_name     text NOT NULL REFERENCES jobs (name),
  fingerprint  text NOT NULL
);

CREATE TABLE artifacts (
  source_sha256  text NOT NULL,
  recipe         text NOT NULL,
  name           text NOT NULL UNIQUE,
  model          text NOT NULL,
  artifact       jsonb NOT NULL,
  PRIMARY KEY (source_sha256, recipe)
);
CREATE INDEX artifacts_model ON artifacts (model, name);
