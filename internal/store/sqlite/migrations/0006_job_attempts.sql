-- 0006: a job's attempt history and its user retry budget.
--
-- history is a JSON array of the job's attempts, oldest first (see
-- attemptRow in job.go for the fields); NULL until the job is first
-- assigned. It is written with the job's status in the same statement, so
-- an attempt's end and the job's requeue can never be seen apart. Jobs
-- stored before this have none: their running attempt is recorded when it
-- ends. max_retries is how often a failure of the job's own is retried.

ALTER TABLE jobs ADD COLUMN history TEXT;
ALTER TABLE jobs ADD COLUMN max_retries INTEGER NOT NULL DEFAULT 0;
