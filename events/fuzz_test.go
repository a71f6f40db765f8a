package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"council.dev/events"
	"council.dev/shared/council"
)

// structuredSeeds are valid fixtures of every inbound type, in structured
// mode.
func structuredSeeds(f *testing.F) [][]byte {
	f.Helper()
	var out [][]byte
	for _, name := range []string{
		"deliberation.requested.v1/valid/deliberation.json",
		"proposal.requested.v1/valid/stage0.json",
		"critique.requested.v1/valid/final_review.json",
		"proposal.requested.v1/invalid/wildcard_deliberation_id.json",
	} {
		e, err := events.LoadFixture(name)
		if err != nil {
			f.Fatal(err)
		}
		b, err := events.EncodeStructured(e)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzDecodeStructured feeds arbitrary bytes to the structured CloudEvent
// decoder (the JetStream consumer's first step, the CLI's, the Ray job's):
// it never panics, every error wraps ErrInvalid, and an accepted event
// survives encode → decode with its attributes and data, and then the
// decoder of its type either accepts it or refuses it with ErrInvalid.
func FuzzDecodeStructured(f *testing.F) {
	for _, b := range structuredSeeds(f) {
		f.Add(b)
	}
	for _, g := range garbage {
		f.Add([]byte(g))
	}
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"s","type":"dev.council.sweep.tick.v1"}`))
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"s","type":"t","data_base64":"AAEC"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := events.DecodeStructured(b)
		if err != nil {
			if !errors.Is(err, council.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		again, err := events.EncodeStructured(ev)
		if err != nil {
			return // an attribute the SDK reads but will not write (an extension's value): refused, not a crash
		}
		ev2, err := events.DecodeStructured(again)
		if err != nil {
			t.Fatalf("re-encoded event rejected: %v\n%s", err, again)
		}
		if ev2.ID() != ev.ID() || ev2.Type() != ev.Type() || ev2.Source() != ev.Source() || !bytes.Equal(sameJSON(ev2.Data()), sameJSON(ev.Data())) {
			t.Fatalf("event changed on re-encoding: %v\nthen %v", ev, ev2)
		}
		if decode, ok := decoders[ev.Type()]; ok {
			if err := decode(ev); err != nil && !errors.Is(err, council.ErrInvalid) {
				t.Fatalf("%s: error %v does not wrap ErrInvalid", ev.Type(), err)
			}
		}
	})
}

// sameJSON is b as the SDK writes JSON data back: compacted, with <, > and &
// escaped (encoding/json's HTML escaping), so that {"&":""} and
// {"\u0026":""} compare equal; b unchanged when it is not JSON.
func sameJSON(b []byte) []byte {
	if !json.Valid(b) {
		return b
	}
	var compact, escaped bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		return b
	}
	json.HTMLEscape(&escaped, compact.Bytes())
	return escaped.Bytes()
}

// FuzzDecodeState feeds arbitrary bytes to every decoder of stored state
// (the KV bucket: headers of every version, whole states, quarantine, the
// tally) and of the token stream: none may panic, every error wraps
// ErrInvalid (a value that does not decode is quarantined, never a crash of
// the sweep), and a state that decodes is encoded again without error.
func FuzzDecodeState(f *testing.F) {
	e, err := events.LoadFixture("deliberation.requested.v1/valid/deliberation.json")
	if err != nil {
		f.Fatal(err)
	}
	task, err := events.DecodeRequest(e)
	if err != nil {
		f.Fatal(err)
	}
	d, err := council.New("dlb-fuzz", task, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		f.Fatal(err)
	}
	for _, v := range []int{0, 1} {
		b, err := events.EncodeStateVersion(d, v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	header, _, err := events.NewStateCodec(16).Encode(d)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(header)
	for _, g := range garbage {
		f.Add([]byte(g))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(what string, err error) {
			t.Helper()
			if err != nil && !errors.Is(err, council.ErrInvalid) {
				t.Fatalf("%s: error %v does not wrap ErrInvalid", what, err)
			}
		}
		d, err := events.DecodeState(b)
		check("DecodeState", err)
		if err == nil {
			if _, _, err := events.NewStateCodec(16).Encode(d); err != nil && !errors.Is(err, council.ErrInvalid) {
				t.Fatalf("a decoded state does not encode: %v", err)
			}
		}
		_, err = events.DecodeStateHeader(b)
		check("DecodeStateHeader", err)
		_, err = events.NewStateCodec(16).Decode(b, func(keys []string) ([][]byte, error) {
			return make([][]byte, len(keys)), nil // every record missing
		})
		check("StateCodec.Decode", err)
		_, err = events.DecodeQuarantine(b)
		check("DecodeQuarantine", err)
		_, err = events.DecodeTally(b)
		check("DecodeTally", err)
		_, err = events.DecodeToken(b)
		check("DecodeToken", err)
	})
}
