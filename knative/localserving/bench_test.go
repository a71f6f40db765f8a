package localserving

import (
	"testing"
	"time"
)

// BenchmarkColdStart measures, for the bare CloudEvents receiver
// (testdata/receiver), a request in the event path when the Service is at
// zero (cold: exec, readiness, proxy; its instance killed before each) and
// when an instance is warm, in the same run, and the warm request sent to
// the instance directly (no activator). Cold reports, besides the
// request's latency, the instance's exec → first successful readiness
// probe (ready-ms) and how long the activator held the request (held-ms).
// Readiness is probed every millisecond here, so that the figures are not
// rounded up to Knative's 50 ms probing.
func BenchmarkColdStart(b *testing.B) {
	benchColdStart(b, "receiver", receiver())
}

// benchColdStart runs the cold and warm sub-benchmarks for the binary cmd
// as a Service name with no autoscaling annotation.
func benchColdStart(b *testing.B, name string, cmd Command) {
	sv := newServing(b, WithProbeInterval(time.Millisecond))
	url := add(b, sv, knService(name, nil, 0, 0), cmd)
	b.Run(name+"/cold", func(b *testing.B) {
		before := sv.Stats(name)
		for range b.N {
			b.StopTimer()
			if sv.Instances(name) > 0 {
				if _, err := sv.Kill(name); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
			mustSend(b, url, 0)
		}
		after := sv.Stats(name)
		if cold := after.ColdRequests - before.ColdRequests; cold != b.N {
			b.Fatalf("%d cold requests of %d", cold, b.N)
		}
		b.ReportMetric(meanSince(before.Ready, before.MeanReady, after.Ready, after.MeanReady), "ready-ms")
		b.ReportMetric(meanSince(before.ColdRequests, before.MeanColdWait, after.ColdRequests, after.MeanColdWait), "held-ms")
	})
	b.Run(name+"/warm", func(b *testing.B) {
		mustSend(b, url, 0)
		before := sv.Stats(name)
		b.ResetTimer()
		for range b.N {
			mustSend(b, url, 0)
		}
		if warm := sv.Stats(name).WarmRequests - before.WarmRequests; warm != b.N {
			b.Fatalf("%d warm requests of %d", warm, b.N)
		}
	})
	// The same request sent to the warm instance itself: what the
	// activator adds is warm minus direct.
	b.Run(name+"/direct", func(b *testing.B) {
		mustSend(b, url, 0)
		s := sv.service(name)
		s.mu.Lock()
		addr := s.instances[0].addr
		s.mu.Unlock()
		b.ResetTimer()
		for range b.N {
			mustSend(b, "http://"+addr, 0)
		}
	})
}

// meanSince is the mean in milliseconds of the values added between two
// readings of a count and its mean.
func meanSince(n0 int, mean0 time.Duration, n1 int, mean1 time.Duration) float64 {
	if n1 == n0 {
		return 0
	}
	sum := mean1*time.Duration(n1) - mean0*time.Duration(n0)
	return float64(sum) / float64(n1-n0) / float64(time.Millisecond)
}
