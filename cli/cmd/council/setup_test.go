package main

import (
	"bytes"
	"strings"
	"testing"

	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/adapters/natsjs/natstest"
)

// TestSetupIsIdempotent runs `council setup` twice against a real NATS:
// the first run creates the topology and says so, the second changes
// nothing and says every object exists, and the topology then binds
// (natsjs.Bind, what a function started with COUNCIL_NATS_SETUP=bind does).
func TestSetupIsIdempotent(t *testing.T) {
	srv, _, js := natstest.Start(t)
	setup := func() string {
		t.Helper()
		var out, errb bytes.Buffer
		code := run(t.Context(), []string{"setup", "-nats", srv.ClientURL()}, strings.NewReader(""), &out, &errb,
			func(string) string { return "" })
		if code != 0 {
			t.Fatalf("council setup: exit %d\n%s%s", code, out.String(), errb.String())
		}
		return out.String()
	}
	first, second := setup(), setup()
	for _, want := range []string{"stream COUNCIL_EVENTS: created", "bucket council-deliberations: created", "done"} {
		if !strings.Contains(first, want) {
			t.Errorf("first council setup does not say %q:\n%s", want, first)
		}
	}
	if strings.Contains(second, "created") || !strings.Contains(second, "stream COUNCIL_EVENTS: exists") {
		t.Errorf("second council setup is not a no-op:\n%s", second)
	}
	if err := natsjs.Bind(t.Context(), js, natsjs.DefaultTopology()); err != nil {
		t.Errorf("bind after council setup: %v", err)
	}
}

// TestSetupRejectsArguments: council setup takes flags only.
func TestSetupRejectsArguments(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(t.Context(), []string{"setup", "extra"}, strings.NewReader(""), &out, &errb,
		func(string) string { return "" }); code != 2 {
		t.Errorf("council setup extra: exit %d, want 2\n%s", code, errb.String())
	}
}
