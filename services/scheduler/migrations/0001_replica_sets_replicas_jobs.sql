-- The scheduler schema: replica sets (the applied spec), their replicas and
-- jobs. Applied by common/db's migration runner with search_path set to the
-- scheduler schema. Specs are stored as serialized hangar.v1 messages (the
-- scheduler reads them whole); everything the scheduler recovers from or an
-- operator queries is a column.

CREATE TABLE replica_sets (
  deployment   text NOT NULL,
  revision     bigint NOT NULL,
  -- hangar.v1.ReplicaSetSpec, serialized.
  spec         bytea NOT NULL,
  desired      integer NOT NULL CHECK (desired BETWEEN 0 AND 64),
  deleting     boolean NOT NULL DEFAULT false,
  version      bigint NOT NULL DEFAULT 1,
  create_time  timestamptz NOT NULL,
  PRIMARY KEY (deployment, revision)
);

CREATE TABLE replicas (
  name             text PRIMARY KEY,
  deployment       text NOT NULL,
  revision         bigint NOT NULL,
  index            integer NOT NULL CHECK (index >= 0),
  -- hangar.v1.ReplicaState / Priority numbers.
  state            smallint NOT NULL,
  priority         smallint NOT NULL,
  node             text NOT NULL DEFAULT '',
  -- GPU slot indexes on the node.
  gpus             integer[] NOT NULL DEFAULT '{}',
  address          text NOT NULL DEFAULT '',
  pid              integer NOT NULL DEFAULT 0,
  restarts         integer NOT NULL DEFAULT 0,
  last_error       text NOT NULL DEFAULT '',
  stopping         boolean NOT NULL DEFAULT false,
  create_time      timestamptz NOT NULL,
  ready_time       timestamptz,
  -- Since when it holds GPUs; NULL while pending.
  placed_time      timestamptz,
  -- Seconds of earlier placements.
  replica_seconds  double precision NOT NULL DEFAULT 0,
  FOREIGN KEY (deployment, revision) REFERENCES replica_sets
    ON DELETE CASCADE,
  UNIQUE (deployment, revision, index)
);

CREATE TABLE jobs (
  name            text PRIMARY KEY,
  request_id      text NOT NULL UNIQUE,
  -- hangar.v1.JobSpec, serialized.
  spec            bytea NOT NULL,
  owner           text NOT NULL DEFAULT '',
  -- hangar.v1.JobState number.
  state           smallint NOT NULL,
  node            text NOT NULL DEFAULT '',
  gpus            integer[] NOT NULL DEFAULT '{}',
  pid             integer NOT NULL DEFAULT 0,
  exit_code       integer NOT NULL DEFAULT 0,
  log_tail        text NOT NULL DEFAULT '',
  failure_reason  text NOT NULL DEFAULT '',
  create_time     timestamptz NOT NULL,
  start_time      timestamptz,
  end_time        timestamptz
);

CREATE INDEX jobs_by_create_time ON jobs (create_time, name);
