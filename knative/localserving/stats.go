package localserving

import "time"

// Stats are a Service's counts and latencies since it was added, and its
// gauges now.
type Stats struct {
	// Starts counts the instances started; Ready those whose readiness
	// probe succeeded, LastReady and MeanReady their exec → first
	// successful probe.
	Starts, Ready        int
	LastReady, MeanReady time.Duration
	// ColdRequests counts the requests that found no ready instance and
	// were held until one had room for them (the activator's cold start in
	// the event path; under a burst, the wait for a slot on the instances
	// it started is included); LastColdWait and MeanColdWait are how long
	// they were held. Counted when proxied, as are the queued and warm.
	ColdRequests               int
	LastColdWait, MeanColdWait time.Duration
	// QueuedRequests counts the requests held while ready instances were
	// all at their containerConcurrency.
	QueuedRequests int
	// WarmRequests counts the requests proxied at once; LastWarm and
	// MeanWarm are the latency through the activator (arrival → the
	// answer's end, the instance's handling included) of those answered,
	// counted once the answer has ended.
	WarmRequests       int
	LastWarm, MeanWarm time.Duration
	// Failed counts the requests the activator answered itself: 502 (the
	// instance failed or exited), 503 (queue full, closing), 504 (timeout).
	Failed int
	// InFlight and Queued are the requests being proxied and held now;
	// Instances the processes running now.
	InFlight, Queued, Instances int
}

// tally accumulates a count, the last value and a sum for a mean.
type tally struct {
	n    int
	last time.Duration
	sum  time.Duration
}

func (t *tally) add(d time.Duration) {
	t.n++
	t.last = d
	t.sum += d
}

func (t tally) mean() time.Duration {
	if t.n == 0 {
		return 0
	}
	return t.sum / time.Duration(t.n)
}

// counters are what Stats reports, kept under the service's lock.
type counters struct {
	starts  int
	ready   tally
	cold    tally
	queued  int
	warm    int
	warmLat tally
	failed  int
}

func (c *counters) stats() Stats {
	return Stats{
		Starts: c.starts, Ready: c.ready.n, LastReady: c.ready.last, MeanReady: c.ready.mean(),
		ColdRequests: c.cold.n, LastColdWait: c.cold.last, MeanColdWait: c.cold.mean(),
		QueuedRequests: c.queued,
		WarmRequests:   c.warm, LastWarm: c.warmLat.last, MeanWarm: c.warmLat.mean(),
		Failed: c.failed,
	}
}
