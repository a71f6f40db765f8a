package events_test

import (
	"encoding/json"
	"testing"

	"council.dev/events"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// Each benchmark here has a baseline next to it: the plain encoding/json
// work on the same data, so the difference is what the codec adds (checks,
// defaults, mapping between wire and domain).

// BenchmarkDecodeRequest decodes the deliberation.requested fixture of a
// 3-agent deliberation into a task with its defaults, validated.
func BenchmarkDecodeRequest(b *testing.B) {
	e, err := events.LoadFixture("deliberation.requested.v1/valid/deliberation.json")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := events.DecodeRequest(e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeRequestBaseline unmarshals the same data into a
// map[string]any, checking nothing.
func BenchmarkDecodeRequestBaseline(b *testing.B) {
	e, err := events.LoadFixture("deliberation.requested.v1/valid/deliberation.json")
	if err != nil {
		b.Fatal(err)
	}
	data := e.Data()
	for b.Loop() {
		var v map[string]any
		if err := json.Unmarshal(data, &v); err != nil {
			b.Fatal(err)
		}
	}
}

// completed is a completed 3-agent, 1-round deliberation: 3 ranked
// proposals with their final critiques, 3 earlier proposals and critiques.
func completed(b *testing.B) *council.Deliberation {
	b.Helper()
	d, err := council.New("dlb-bench", counciltest.Task(), t0)
	if err != nil {
		b.Fatal(err)
	}
	if err := counciltest.Finish(d, t0); err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkEncodeCompleted encodes the result of a 3-agent deliberation as
// a deliberation.completed envelope (domain to wire, then JSON).
func BenchmarkEncodeCompleted(b *testing.B) {
	d := completed(b)
	for b.Loop() {
		if env := events.NewCompleted(source, d, t0); len(env.Data) == 0 {
			b.Fatal("no data")
		}
	}
}

// BenchmarkEncodeCompletedBaseline marshals the same payload, already in
// its wire struct, with json.Marshal.
func BenchmarkEncodeCompletedBaseline(b *testing.B) {
	env := events.NewCompleted(source, completed(b), t0)
	w, err := events.DecodeCompleted(events.ToEvent(env))
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("data: %d bytes", len(env.Data))
	for b.Loop() {
		if _, err := json.Marshal(w); err != nil {
			b.Fatal(err)
		}
	}
}
