package events_test

import (
	"testing"
	"time"

	"council.dev/events"
	"council.dev/shared/council"
)

func TestClaimCheckRoundTrips(t *testing.T) {
	ev := events.ToEvent(council.Envelope{ID: "dlb-1.completed", Type: events.TypeDeliberationCompleted,
		Source: "council.dev/execute", Time: time.Now(), Data: []byte(`{"a":1}`)})
	ref := events.DataRef("council-bodies", ev.ID())
	bucket, object, err := events.ParseDataRef(ref)
	if err != nil || bucket != "council-bodies" || object != "dlb-1.completed" {
		t.Fatalf("ParseDataRef(%q) = %q, %q, %v", ref, bucket, object, err)
	}
	off := events.Offload(ev, ref)
	if got, ok := events.OffloadedRef(off); !ok || got != ref || len(off.Data()) != 0 {
		t.Fatalf("offloaded event: ref %q %v, %d bytes of data", got, ok, len(off.Data()))
	}
	if _, ok := events.OffloadedRef(ev); ok {
		t.Error("an event with its data reported as offloaded")
	}
	b, err := events.EncodeStructured(off)
	if err != nil {
		t.Fatal(err)
	}
	back, err := events.DecodeStructured(b)
	if err != nil {
		t.Fatal(err)
	}
	restored := events.Restore(back, ev.Data())
	if string(restored.Data()) != `{"a":1}` || restored.Extensions()[events.ExtensionDataRef] != nil {
		t.Errorf("restored: data %s, extensions %v", restored.Data(), restored.Extensions())
	}
	if _, _, err := events.ParseDataRef("https://example.com/x"); err == nil {
		t.Error("a dataref of another scheme accepted")
	}
}
