package localbroker

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
)

// BenchmarkDelivery measures one event's way from a POST to its subscriber:
// straight to the subscriber (the baseline) and through the Broker (ingress,
// JetStream persist and ack, Trigger consumer, binary POST), in the same run.
func BenchmarkDelivery(b *testing.B) {
	got := make(chan struct{}, 1)
	sub := newSink(b, func(_ int, _ event.Event, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		got <- struct{}{}
	})
	b.Run("direct", func(b *testing.B) {
		for i := range b.N {
			if code := post(b, sub.URL, newEvent(strconv.Itoa(i), typeA), false); code != http.StatusOK {
				b.Fatalf("status %d", code)
			}
			<-got
		}
	})
	b.Run("broker", func(b *testing.B) {
		e := startBroker(b, manifestsWith(trigger("to-a", typeA, sub.URL, nil)), noRefs)
		b.ResetTimer()
		for i := range b.N {
			if code := post(b, e.URL(), newEvent(strconv.Itoa(i), typeA), false); code != http.StatusAccepted {
				b.Fatalf("status %d", code)
			}
			<-got
		}
	})
}
