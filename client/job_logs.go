package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// maxLogRetries is how many times in a row StreamLogs reconnects without
// receiving a byte before it gives up.
const maxLogRetries = 10

// StreamLogs writes the job's combined stdout and stderr (its std_log) to
// w, like "az ml job stream". Without follow it writes what the job has
// written so far and returns. With follow it keeps writing as the job
// writes and returns when the job has reached a terminal status and all
// its output is written; if the connection breaks first it reconnects at
// the byte it got to, so nothing is lost or written twice. It gives up
// after maxLogRetries reconnections in a row that bring nothing. A failed
// write to w ends it with that error. StreamLogs does not report how the
// job ended: call Wait for that.
func (j *Job) StreamLogs(ctx context.Context, w io.Writer, follow bool) error {
	var offset int64
	if !follow {
		_, err := j.copyLogs(ctx, w, &offset, false)
		return err
	}
	failures := 0
	for {
		before := offset
		clean, err := j.copyLogs(ctx, w, &offset, true)
		var we *writeError
		switch {
		case errors.As(err, &we):
			return we.err
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil && !retryable(err):
			return err
		}
		if clean {
			// The server ends the stream when the job is over; make
			// sure it is, rather than a proxy or a restart cutting it.
			if err := j.Refresh(ctx); err != nil {
				if !retryable(err) {
					return err
				}
			} else if j.Status().Terminal() {
				return nil
			}
		}
		if offset > before {
			failures = 0
			continue // progress: reconnect at once
		}
		// Nothing new: do not spin on a server that ends streams at once.
		if failures++; failures > maxLogRetries {
			if err == nil {
				err = errors.New("stream ended before the job did")
			}
			return fmt.Errorf("stream logs of job %s: giving up after %d attempts: %w", j.name, failures, err)
		}
		if err := sleep(ctx, j.ws.poll); err != nil {
			return err
		}
	}
}

// retryable reports whether err may go away on a new attempt: a transport
// error or a 5xx answer, not a 4xx.
func retryable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.StatusCode >= 500
	}
	return true
}

// writeError marks a failure to write to the caller's writer, which ends
// StreamLogs at once.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }

// copyLogs fetches the job's log from *offset and copies it to w,
// advancing *offset by every byte written. clean reports whether the
// answer ended normally rather than broke off.
func (j *Job) copyLogs(ctx context.Context, w io.Writer, offset *int64, follow bool) (clean bool, err error) {
	target := j.ws.jobPath(j.name) + "/logs?offset=" + strconv.FormatInt(*offset, 10) +
		"&follow=" + strconv.FormatBool(follow)
	res, err := j.ws.send(ctx, http.MethodGet, target, "", nil)
	if err != nil {
		return false, markNotFound(err, ErrJobNotFound)
	}
	defer res.Body.Close()
	buf := make([]byte, 32<<10)
	for {
		n, rerr := res.Body.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			*offset += int64(m)
			if werr == nil && m < n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return false, &writeError{err: werr}
			}
		}
		if rerr == io.EOF {
			return true, nil
		}
		if rerr != nil {
			return false, rerr
		}
	}
}
