package model

import "time"

// Lease is a named, time-limited claim that one replica of the control
// plane holds at a time: the leader lease that decides which replica runs
// the reconcilers. Term is the fencing token: it grows by one each time
// the lease passes to another holder, and a write carrying an older term
// is refused (see store.WithFence).
type Lease struct {
	Name       string    // the lease's name, e.g. "controller"
	Holder     string    // the holding replica's ID; "" when released
	Address    string    // where the holder can be reached (host:port); "" when unknown
	Term       int64     // 1 for the first holder, +1 for each later one
	AcquiredAt time.Time // when Holder took it (UTC)
	RenewedAt  time.Time // Holder's last renewal (UTC)
	ExpiresAt  time.Time // when it lapses unless renewed (UTC)
}

// Held reports whether the lease is held at now: it has a holder and has
// not expired.
func (l Lease) Held(now time.Time) bool {
	return l.Holder != "" && now.Before(l.ExpiresAt)
}
