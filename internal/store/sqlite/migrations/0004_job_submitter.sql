-- 0004: the API token that submitted each job (its ID), so that the job's
-- secret environment variables can be shown to that token and masked for
-- other readers. Jobs stored before this know no submitter: only owners
-- see their secrets.

ALTER TABLE jobs ADD COLUMN created_by_token TEXT NOT NULL DEFAULT '';
