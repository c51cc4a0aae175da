-- 0008: the queue head in the index's order.
--
-- A queue's head is read as ORDER BY seq, id_key LIMIT n. With id_key in
-- the index after seq, an index scan yields the rows in that order and
-- stops after n. Without it, the planner could only trust its statistics:
-- on a queue that grew since the table was last analyzed it estimated one
-- row and sorted them all (BenchmarkJobHead: 1.27 ms a call over 1,000
-- queued jobs, where the index scan reads 8).

CREATE INDEX jobs_by_compute_status_seq ON jobs (compute_key, status, seq, id_key);
DROP INDEX jobs_by_compute_status;
