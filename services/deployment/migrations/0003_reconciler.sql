-- The reconciler: row leases (one deployment-service process acts on a
-- deployment at a time) and replica time read from the scheduler.

-- Who drives the deployment now and until when (microseconds since the
-- epoch). A lease is taken with one UPDATE ... WHERE the lease is free,
-- expired or already the taker's, and renewed on every pass.
ALTER TABLE deployments ADD COLUMN lease_owner text;
ALTER TABLE deployments ADD COLUMN lease_expiry_micros bigint;

-- Replica time, append-only: each row is the growth of one replica's
-- cumulative replica-seconds (the scheduler's Replica.replica_seconds) since
-- the largest value recorded for it. The primary key makes a sample seen
-- twice (a restart, a retried pass) add nothing.
CREATE TABLE replica_usage (
  -- "<replica name>@<create micros>": names are reused after a scale-down.
  replica             text NOT NULL,
  cumulative_seconds  double precision NOT NULL,
  deployment          text NOT NULL,
  revision            bigint NOT NULL,
  hardware            text NOT NULL,
  day                 date NOT NULL,
  seconds             double precision NOT NULL CHECK (seconds >= 0),
  create_micros       bigint NOT NULL,
  PRIMARY KEY (replica, cumulative_seconds)
);
CREATE INDEX replica_usage_day ON replica_usage (day, deployment, hardware);
