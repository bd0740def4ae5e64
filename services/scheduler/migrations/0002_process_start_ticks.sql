-- A pid alone may name another process after a restart (pids are reused);
-- with the process's start time (/proc/<pid>/stat starttime, clock ticks
-- since boot) it names one process for good. Recorded for every replica's
-- runner and every running job, so that a restarted scheduler re-adopts
-- exactly the processes it started.
ALTER TABLE replicas ADD COLUMN pid_start_ticks bigint NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN pid_start_ticks bigint NOT NULL DEFAULT 0;
