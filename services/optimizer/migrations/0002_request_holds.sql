-- Artifact holds (garbage collection): every request id holds the artifact
-- of its job until it is released (ReleaseOptimizationJob). release_time is
-- the optimizer's clock at the release; NULL while the hold is live.
ALTER TABLE requests ADD COLUMN release_time timestamptz;
CREATE INDEX requests_job ON requests (job_name);
CREATE INDEX jobs_artifact_key ON jobs (artifact_key);
