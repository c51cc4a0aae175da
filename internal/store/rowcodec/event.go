package rowcodec

import "kumo/internal/model"

// ScanEvent reads an event from the columns compute_id, time, kind,
// message, in that order.
func ScanEvent(sc Scanner) (model.Event, error) {
	var (
		e model.Event
		t string
	)
	if err := sc.Scan(&e.ComputeID, &t, &e.Kind, &e.Message); err != nil {
		return model.Event{}, err
	}
	var d Decoder
	e.Time = d.Time("time", t)
	return e, d.err
}
