-- The deployment schema. Applied by common/db's migration runner with
-- search_path set to the deployment schema.
--
-- Deployments and revisions keep their hangar.v1 message as JSON (`body`,
-- proto3 JSON without the etag), with the columns List filters and indexes
-- need beside it; `version` is bumped by every write and is the etag.

CREATE TABLE deployments (
  name          text PRIMARY KEY,
  display_name  text NOT NULL,
  model         text NOT NULL,
  -- hangar.v1.DeploymentState number.
  state         smallint NOT NULL,
  version       bigint NOT NULL DEFAULT 1,
  body          jsonb NOT NULL
);
-- Display names are unique among live (not DELETED) deployments.
CREATE UNIQUE INDEX deployments_live_display_name
  ON deployments (display_name) WHERE state <> 9;
CREATE INDEX deployments_model ON deployments (model);

CREATE TABLE revisions (
  deployment    text NOT NULL REFERENCES deployments (name),
  number        bigint NOT NULL CHECK (number >= 1),
  body          jsonb NOT NULL,
  PRIMARY KEY (deployment, number)
);

-- Idempotency keys: (kind, request_id) -> the fingerprint of the request
-- that first used it and the resource it made.
CREATE TABLE request_ids (
  kind          text NOT NULL,
  request_id    text NOT NULL,
  fingerprint   text NOT NULL,
  resource      text NOT NULL,
  create_micros bigint NOT NULL,
  PRIMARY KEY (kind, request_id)
);

-- API keys: the SHA-256 of the key and a display prefix, never the key.
CREATE TABLE api_keys (
  name              text PRIMARY KEY,
  deployment        text NOT NULL REFERENCES deployments (name),
  display_name      text NOT NULL,
  prefix            text NOT NULL,
  sha256            text NOT NULL UNIQUE,
  create_micros     bigint NOT NULL,
  last_used_micros  bigint,
  revoke_micros     bigint
);
CREATE INDEX api_keys_deployment ON api_keys (deployment);
