package counciltest

import "time"

// Within checks cond at once and then at every tick of a ticker of period
// every, until it holds (true) or d has passed (false, after one last
// check). Tests wait with it for a condition they cannot subscribe to
// (a job's state in Ray, a key expiring) instead of sleeping.
func Within(d, every time.Duration, cond func() bool) bool {
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-timeout.C:
			return cond()
		}
	}
	return true
}
