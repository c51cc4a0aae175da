package jobfiles

import (
	"archive/tar"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"kumo/internal/runner"
)

// A job's log is its two streams, each in its own file, and an index of
// the order in which their chunks arrived (stdLogIndex). std_log is read
// through the index from the two stream files, so the output is stored
// once. The index is a sequence of 8-byte big-endian segments, each the
// length of a run of one stream's bytes with the stream in the top bit;
// a chunk of the same stream as the last segment lengthens it in place, so
// a job that writes mostly one stream has an index of a few bytes.
//
// A job written before the index existed has a std_log.txt of its own and
// no index; it is read and appended to as before.

// stdLogIndex is the index file's name in the job directory (outside
// user_logs/, which is downloaded as it is).
const stdLogIndex = "std_log.idx"

const (
	segmentSize = 8
	stderrBit   = 1 << 63
)

// DefaultLogLimit is the log limit of a new [Files]: bytes of a job's log
// (stdout and stderr together, with the index's few bytes) it keeps.
const DefaultLogLimit = 256 << 20

// ErrLogCut is returned by [Files.Append] for the chunk that passed the log
// limit: the bytes before the limit and the cut line were stored, the rest
// dropped. Later chunks of the job are dropped without an error. The caller
// tells the job (for example with a warning).
var ErrLogCut = errors.New("job log cut at the log limit")

// SetLogLimit sets how many bytes of stdout and stderr together a job's log
// keeps; n <= 0 means no limit. Call it before the store is used.
func (f *Files) SetLogLimit(n int64) { f.limit = n }

// LogLimit returns the log limit set by SetLogLimit; <= 0 means none.
func (f *Files) LogLimit() int64 { return f.limit }

// CutWarning is the warning recorded on a job whose log was cut at limit
// bytes.
func CutWarning(limit int64) string {
	return "the job's output passed the log limit of " + strconv.FormatInt(limit, 10) +
		" bytes (kumo up --max-job-log-bytes): its log was cut there and later output dropped"
}

// CutLine is the line that ends a log cut at limit bytes: at byte at of the
// cut stream.
func CutLine(stream string, at, limit int64) string {
	return "[kumo] log cut: " + stream + " stopped at byte " + strconv.FormatInt(at, 10) +
		" because the job's output reached the limit of " + strconv.FormatInt(limit, 10) +
		" bytes (kumo up --max-job-log-bytes); later output was dropped\n"
}

// jobLog is the open log of a job being written.
type jobLog struct {
	files [2]*os.File // stdout, stderr
	sizes [2]int64

	idx     *os.File // the std_log index; nil for a log with its own std_log.txt
	idxSize int64
	last    int   // stream of the index's last segment; -1 when empty
	lastLen int64 // its length

	legacy     *os.File // std_log.txt of a log written before the index
	legacySize int64
}

func streamIndex(stream string) (int, error) {
	switch stream {
	case Stdout:
		return 0, nil
	case Stderr:
		return 1, nil
	case StdLog:
		return 2, nil
	}
	return 0, fmt.Errorf("unknown stream %q", stream)
}

var streamFiles = [3]string{runner.StdoutFile, runner.StderrFile, runner.StdLogFile}

// log opens a job's log for writing; f.mu must be held.
func (f *Files) log(runID string) (*jobLog, error) {
	if l, ok := f.open[runID]; ok {
		return l, nil
	}
	dir, err := f.JobDir(runID)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "user_logs"), 0o700); err != nil {
		return nil, fmt.Errorf("create job log dir: %w", err)
	}
	l := &jobLog{last: -1}
	if err := l.openFiles(dir); err != nil {
		l.close()
		return nil, fmt.Errorf("open job log: %w", err)
	}
	f.open[runID] = l
	return l, nil
}

func (l *jobLog) openFiles(dir string) error {
	for i := range l.files {
		fh, size, err := openAppend(filepath.Join(dir, streamFiles[i]), os.O_APPEND)
		if err != nil {
			return err
		}
		l.files[i], l.sizes[i] = fh, size
	}
	idxName := filepath.Join(dir, stdLogIndex)
	if _, err := os.Stat(idxName); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(dir, runner.StdLogFile)); err == nil {
			l.legacy, l.legacySize, err = openAppend(filepath.Join(dir, runner.StdLogFile), os.O_APPEND)
			return err
		}
	}
	var err error
	if l.idx, l.idxSize, err = openAppend(idxName, 0); err != nil {
		return err
	}
	l.idxSize -= l.idxSize % segmentSize // a torn last segment is rewritten
	// Bytes written to a stream file but not indexed (a crash in between)
	// are indexed now, at the end.
	idx := &records{f: l.idx, n: l.idxSize / segmentSize}
	var indexed [2]int64
	for k := range idx.n {
		s, err := idx.at(k)
		if err != nil {
			return err
		}
		indexed[s.stream] += s.n
		l.last, l.lastLen = s.stream, s.n
	}
	for i := range indexed {
		if l.sizes[i] > indexed[i] {
			if err := l.index(i, l.sizes[i]-indexed[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

func openAppend(name string, flag int) (*os.File, int64, error) {
	fh, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR|flag, 0o600)
	if err != nil {
		return nil, 0, err
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, 0, err
	}
	return fh, st.Size(), nil
}

func (l *jobLog) close() {
	for _, fh := range []*os.File{l.files[0], l.files[1], l.idx, l.legacy} {
		if fh != nil {
			fh.Close()
		}
	}
}

// put appends data to stream i's file and to std_log.
func (l *jobLog) put(i int, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	n, err := l.files[i].Write(data)
	l.sizes[i] += int64(n)
	if n > 0 {
		if l.legacy != nil {
			k, lerr := l.legacy.Write(data[:n])
			l.legacySize += int64(k)
			err = errors.Join(err, lerr)
		} else {
			err = errors.Join(err, l.index(i, int64(n)))
		}
	}
	return err
}

// index records that n more bytes of stream i follow in std_log.
func (l *jobLog) index(i int, n int64) error {
	at := l.idxSize
	if l.last == i {
		at -= segmentSize
		n += l.lastLen
	}
	var b [segmentSize]byte
	v := uint64(n)
	if i == 1 {
		v |= stderrBit
	}
	binary.BigEndian.PutUint64(b[:], v)
	if _, err := l.idx.WriteAt(b[:], at); err != nil {
		return fmt.Errorf("index std_log: %w", err)
	}
	l.idxSize = max(l.idxSize, at+segmentSize)
	l.last, l.lastLen = i, n
	return nil
}

// bytes is what the log holds against the limit.
func (l *jobLog) bytes() int64 { return l.sizes[0] + l.sizes[1] + l.idxSize }

// lineStart is "\n" when stream i's file or std_log does not end with a
// newline, so that the cut line starts a line of its own in both.
func (l *jobLog) lineStart(i int) string {
	ends := func(fh *os.File, size int64) bool {
		b := make([]byte, 1)
		_, err := fh.ReadAt(b, size-1)
		return size == 0 || err != nil || b[0] == '\n'
	}
	logEnd := true
	switch {
	case l.legacy != nil:
		logEnd = ends(l.legacy, l.legacySize)
	case l.last >= 0:
		logEnd = ends(l.files[l.last], l.sizes[l.last])
	}
	if ends(l.files[i], l.sizes[i]) && logEnd {
		return ""
	}
	return "\n"
}

// Append writes a chunk of stream (Stdout or Stderr) at offset. Bytes the
// store already holds are skipped, so a resent chunk is written once; a
// chunk that would leave a gap is refused with an error (the sender resends
// from Offsets after reconnecting). New bytes also go to the interleaved
// std_log. The chunk that passes the log limit is cut there and gets
// [ErrLogCut]; later chunks are dropped.
func (f *Files) Append(runID, stream string, offset int64, data []byte) error {
	i, err := streamIndex(stream)
	if err != nil || i == 2 {
		return fmt.Errorf("append to %q: not an output stream", stream)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l, err := f.log(runID)
	if err != nil {
		return err
	}
	if f.limit > 0 && l.bytes() > f.limit {
		return nil // cut already: only the cut line passes the limit
	}
	size := l.sizes[i]
	if offset > size {
		return fmt.Errorf("append to %s of %s: gap at offset %d, have %d bytes", stream, runID, offset, size)
	}
	skip := size - offset
	if skip >= int64(len(data)) {
		return nil
	}
	data = data[skip:]
	cut := false
	if f.limit > 0 {
		// A new segment costs index bytes too.
		room := f.limit - l.bytes()
		if l.idx != nil && l.last != i {
			room -= segmentSize
		}
		if cut = int64(len(data)) > room; cut {
			data = data[:max(room, 0)]
		}
	}
	if err := l.put(i, data); err != nil {
		return fmt.Errorf("append to %s of %s: %w", stream, runID, err)
	}
	if cut {
		line := CutLine(stream, l.sizes[i], f.limit)
		if err := l.put(i, []byte(l.lineStart(i)+line)); err != nil {
			return fmt.Errorf("cut log of %s: %w", runID, err)
		}
	}
	f.wakeLocked(runID)
	if cut {
		return ErrLogCut
	}
	return nil
}

// Offsets returns how many bytes of stdout and stderr a job has.
func (f *Files) Offsets(runID string) (stdout, stderr int64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, err := f.log(runID)
	if err != nil {
		return 0, 0, err
	}
	return l.sizes[0], l.sizes[1], nil
}

// ReadLog copies stream from offset to w, returning the new offset. A job
// with no output yet reads as empty. std_log is read through the index;
// finding offset costs a walk back over the index from its end, so a
// follower near the end reads in time proportional to what is new.
func (f *Files) ReadLog(runID, stream string, offset int64, w io.Writer) (int64, error) {
	i, err := streamIndex(stream)
	if err != nil {
		return offset, err
	}
	dir, err := f.JobDir(runID)
	if err != nil {
		return offset, err
	}
	if i == 2 {
		v, ok, err := f.stdLogView(runID, dir)
		if err != nil {
			return offset, err
		}
		if ok {
			n, err := v.copy(dir, offset, w)
			return offset + n, err
		}
	}
	fh, err := os.Open(filepath.Join(dir, streamFiles[i]))
	if errors.Is(err, fs.ErrNotExist) {
		return offset, nil
	}
	if err != nil {
		return offset, fmt.Errorf("open log: %w", err)
	}
	defer fh.Close()
	if _, err := fh.Seek(offset, io.SeekStart); err != nil {
		return offset, fmt.Errorf("seek log: %w", err)
	}
	n, err := io.Copy(w, fh)
	return offset + n, err
}

// segment is a run of one stream's bytes in std_log.
type segment struct {
	stream int // 0 stdout, 1 stderr
	n      int64
}

// records reads an index file's segments in blocks.
type records struct {
	f     *os.File
	n     int64 // segments to read; a longer file's rest is ignored
	last  *segment
	block []byte
	first int64 // index of block's first segment
}

const recordsPerBlock = 4096

// at returns segment k (0 <= k < n); the last is r.last when set.
func (r *records) at(k int64) (segment, error) {
	if r.last != nil && k == r.n-1 {
		return *r.last, nil
	}
	if r.block == nil || k < r.first || k >= r.first+int64(len(r.block))/segmentSize {
		r.first = k / recordsPerBlock * recordsPerBlock
		size := min(recordsPerBlock, r.n-r.first) * segmentSize
		r.block = make([]byte, size)
		if _, err := r.f.ReadAt(r.block, r.first*segmentSize); err != nil {
			return segment{}, fmt.Errorf("read std_log index: %w", err)
		}
	}
	v := binary.BigEndian.Uint64(r.block[(k-r.first)*segmentSize:])
	s := segment{n: int64(v &^ stderrBit)}
	if v&stderrBit != 0 {
		s.stream = 1
	}
	return s, nil
}

// stdLogView is a consistent view of a job's std_log: the index's segments
// as they were when it was taken, whatever is appended after.
type stdLogView struct {
	segments int64    // complete segments in the index
	last     segment  // the last one, as the writer holds it (the file's may have grown since)
	sizes    [2]int64 // bytes of each stream the segments cover
}

// stdLogView takes the view of a job's index under f.mu, opening the log
// (which indexes what a crash left unindexed) if it is not open. ok is
// false for a job without an index: no output yet, or a std_log.txt of its
// own.
func (f *Files) stdLogView(runID, dir string) (v stdLogView, ok bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := os.Stat(filepath.Join(dir, stdLogIndex)); errors.Is(err, fs.ErrNotExist) {
		return v, false, nil
	}
	l, open := f.open[runID]
	if !open {
		if l, err = f.log(runID); err != nil {
			return v, false, err
		}
		defer func() {
			l.close()
			delete(f.open, runID)
		}()
	}
	if l.idx == nil {
		return v, false, nil
	}
	v.segments, v.sizes = l.idxSize/segmentSize, l.sizes
	if l.last >= 0 {
		v.last = segment{stream: l.last, n: l.lastLen}
	}
	return v, true, nil
}

// size is the bytes of std_log the view holds.
func (v stdLogView) size() int64 { return v.sizes[0] + v.sizes[1] }

// copy writes the view's std_log from offset to w, reading each segment
// from its stream's file.
func (v stdLogView) copy(dir string, offset int64, w io.Writer) (int64, error) {
	if offset >= v.size() || v.segments == 0 {
		return 0, nil
	}
	idx, err := os.Open(filepath.Join(dir, stdLogIndex))
	if err != nil {
		return 0, fmt.Errorf("open std_log index: %w", err)
	}
	defer idx.Close()
	r := &records{f: idx, n: v.segments, last: &v.last}
	// Walk back from the end to the segment holding offset.
	pos, streamPos := v.size(), v.sizes
	k := v.segments - 1
	for ; k > 0; k-- {
		s, err := r.at(k)
		if err != nil {
			return 0, err
		}
		pos -= s.n
		streamPos[s.stream] -= s.n
		if pos <= offset {
			break
		}
	}
	if k == 0 {
		pos, streamPos = 0, [2]int64{}
	}
	var files [2]*os.File
	defer func() {
		for _, fh := range files {
			if fh != nil {
				fh.Close()
			}
		}
	}()
	var written int64
	for ; k < v.segments; k++ {
		s, err := r.at(k)
		if err != nil {
			return written, err
		}
		from, n := streamPos[s.stream], s.n
		pos, streamPos[s.stream] = pos+s.n, streamPos[s.stream]+s.n
		if skip := offset - (pos - s.n); skip > 0 {
			from, n = from+skip, n-skip
		}
		if files[s.stream] == nil {
			if files[s.stream], err = os.Open(filepath.Join(dir, streamFiles[s.stream])); err != nil {
				return written, fmt.Errorf("open log: %w", err)
			}
		}
		m, err := io.Copy(w, io.NewSectionReader(files[s.stream], from, n))
		written += m
		if err != nil {
			return written, err
		}
		if m < n {
			return written, fmt.Errorf("std_log: %s holds less than its index says", streamFiles[s.stream])
		}
	}
	return written, nil
}

// tarStdLog adds user_logs/std_log.txt, read through the index, to tw; it
// adds nothing for a job without an index.
func (f *Files) tarStdLog(tw *tar.Writer, runID, dir string) error {
	v, ok, err := f.stdLogView(runID, dir)
	if err != nil || !ok {
		return err
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: runner.StdLogFile, Mode: 0o644, Size: v.size(), ModTime: time.Now()}
	if fi, err := os.Stat(filepath.Join(dir, stdLogIndex)); err == nil {
		hdr.ModTime = fi.ModTime()
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err = v.copy(dir, 0, tw)
	return err
}

// tarTrailer is the end marker tar.Writer.Close writes: two zero blocks.
const tarTrailer = 2 * 512

// trailerWriter passes on all but the last tarTrailer bytes written to it,
// so that more entries can follow a closed tar.
type trailerWriter struct {
	w    io.Writer
	held []byte
}

func (t *trailerWriter) Write(p []byte) (int, error) {
	t.held = append(t.held, p...)
	if out := len(t.held) - tarTrailer; out > 0 {
		if _, err := t.w.Write(t.held[:out]); err != nil {
			return 0, err
		}
		t.held = append(t.held[:0], t.held[out:]...)
	}
	return len(p), nil
}

// dropTrailer checks that what it held back is the end marker.
func (t *trailerWriter) dropTrailer() error {
	if len(t.held) != tarTrailer || strings.Trim(string(t.held), "\x00") != "" {
		return errors.New("tar does not end with its end marker")
	}
	return nil
}
