package studio

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"kumo/api"
)

// jobStatuses are the statuses the jobs list filters by.
var jobStatuses = []string{"Queued", "Preparing", "Running", "Finalizing", "Completed", "Failed", "Canceled"}

type jobRow struct {
	Name, Display, Compute, Status, Created, Node string
	Position                                      int
	Reason                                        string
}

type jobsData struct {
	Compute, Status string
	Computes        []string
	Statuses        []string
	Jobs            []jobRow
	More            bool
}

func (s *Studio) loadJobs(r *http.Request, u *user, q url.Values) (*view, error) {
	d := &jobsData{Compute: q.Get("compute"), Status: q.Get("status"), Statuses: jobStatuses}
	var cl api.ComputeList
	if err := s.call(r, u, "GET", s.wsPath+"/computes", nil, nil, &cl); err != nil {
		return nil, err
	}
	for _, c := range cl.Value {
		d.Computes = append(d.Computes, c.Name)
	}
	d.Computes = append(d.Computes, "local")
	filter := url.Values{"$top": {"50"}}
	if d.Compute != "" {
		filter.Set("compute", d.Compute)
	}
	if d.Status != "" {
		filter.Set("status", d.Status)
	}
	var jl api.JobList
	if err := s.call(r, u, "GET", s.wsPath+"/jobs?"+filter.Encode(), nil, nil, &jl); err != nil {
		return nil, err
	}
	d.More = jl.NextLink != ""
	for _, j := range jl.Value {
		p := j.Properties
		row := jobRow{Name: j.Name, Display: p.DisplayName, Compute: p.ComputeID, Status: string(p.Status), Created: p.CreatedOn, Node: p.NodeID, Position: p.QueuePosition}
		if p.PendingReason != nil {
			row.Reason = p.PendingReason.Message
		}
		d.Jobs = append(d.Jobs, row)
	}
	return &view{Title: "Jobs", Nav: "jobs", Data: d}, nil
}

func (s *Studio) jobsPage(w http.ResponseWriter, r *http.Request, u *user) error {
	q := url.Values{}
	if c := r.URL.Query().Get("compute"); c != "" {
		q.Set("compute", c)
	}
	if st := r.URL.Query().Get("status"); st != "" && slices.Contains(jobStatuses, st) {
		q.Set("status", st)
	}
	return s.livePage(w, r, u, "jobs", q)
}

type jobData struct {
	Job      api.JobResource
	P        *api.JobProperties
	Terminal bool
	Outputs  []string
	Log      string // the log's tail
	LogFrom  int64  // offset after the tail
	Exit     string
}

// maxLogTail bounds how much of a log a page shows.
const maxLogTail = 64 << 10

func terminal(st api.JobStatus) bool {
	return st == api.JobCompleted || st == api.JobFailed || st == api.JobCanceled
}

func (s *Studio) loadJob(r *http.Request, u *user, q url.Values) (*view, error) {
	name := q.Get("name")
	var j api.JobResource
	if err := s.call(r, u, "GET", s.wsPath+"/jobs/"+url.PathEscape(name), nil, nil, &j); err != nil {
		return nil, err
	}
	if j.Properties == nil {
		j.Properties = &api.JobProperties{}
	}
	d := &jobData{Job: j, P: j.Properties, Terminal: terminal(j.Properties.Status)}
	for o := range j.Properties.Outputs {
		d.Outputs = append(d.Outputs, o)
	}
	slices.Sort(d.Outputs)
	if j.Properties.ExitCode != nil {
		d.Exit = strconv.Itoa(*j.Properties.ExitCode)
	}
	return &view{Title: "Job " + name, Nav: "jobs", Data: d}, nil
}

func (s *Studio) jobPage(w http.ResponseWriter, r *http.Request, u *user) error {
	name := r.PathValue("name")
	v, err := s.loadJob(r, u, url.Values{"name": {name}})
	if err != nil {
		return asPage(err)
	}
	d := v.Data.(*jobData)
	tail := &tailWriter{max: maxLogTail}
	s.api.Serve(r.Context(), tail, u.sess.tokenHash, "GET", withVersion(s.wsPath+"/jobs/"+url.PathEscape(name)+"/logs"), nil, nil)
	if tail.status == http.StatusOK {
		d.Log, d.LogFrom = tail.String(), tail.total
	}
	s.withLive(v, "job", url.Values{"name": {name}, "offset": {strconv.FormatInt(d.LogFrom, 10)}})
	s.render(w, r, u, http.StatusOK, "job", v)
	return nil
}

func (s *Studio) cancelJob(w http.ResponseWriter, r *http.Request, u *user) error {
	name := r.PathValue("name")
	if err := s.call(r, u, "POST", s.wsPath+"/jobs/"+url.PathEscape(name)+"/cancel", nil, nil, nil); err != nil {
		return asPage(err)
	}
	http.Redirect(w, r, Prefix+"/jobs/"+url.PathEscape(name), http.StatusSeeOther)
	return nil
}

// jobOutputs sends the job's outputs and logs as the API does: a tar file
// to download.
func (s *Studio) jobOutputs(w http.ResponseWriter, r *http.Request, u *user) error {
	name := r.PathValue("name")
	s.api.Serve(r.Context(), w, u.sess.tokenHash, "GET", withVersion(s.wsPath+"/jobs/"+url.PathEscape(name)+"/artifacts"), nil, nil)
	return nil
}

// tailWriter is an http.ResponseWriter that keeps the last max bytes of
// what is written and counts all of them.
type tailWriter struct {
	max    int
	header http.Header
	status int
	buf    []byte
	total  int64
}

func (t *tailWriter) Header() http.Header {
	if t.header == nil {
		t.header = http.Header{}
	}
	return t.header
}

func (t *tailWriter) WriteHeader(status int) {
	if t.status == 0 {
		t.status = status
	}
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.WriteHeader(http.StatusOK)
	t.total += int64(len(p))
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

// String returns the kept bytes, from the first whole line when the start
// was cut.
func (t *tailWriter) String() string {
	s := string(t.buf)
	if t.total > int64(len(t.buf)) {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
		s = fmt.Sprintf("[… %d earlier bytes not shown]\n", t.total-int64(len(s))) + s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
