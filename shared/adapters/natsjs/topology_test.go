package natsjs_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/adapters/natsjs/natstest"
	"council.dev/shared/council"
)

func TestSetupIsIdempotent(t *testing.T) {
	_, _, js := natstest.Start(t)
	ctx := ctxTimeout(t)
	for i := range 2 {
		if err := natsjs.Setup(ctx, js, natsjs.Topology{}); err != nil {
			t.Fatalf("Setup #%d: %v", i+1, err)
		}
	}

	type streamView struct {
		Subjects   []string
		Storage    jetstream.StorageType
		Retention  jetstream.RetentionPolicy
		MaxAge     time.Duration
		Duplicates time.Duration
	}
	for name, want := range map[string]streamView{
		"COUNCIL_EVENTS": {
			Subjects: []string{"council.events.>"}, Storage: jetstream.FileStorage,
			Retention: jetstream.LimitsPolicy, MaxAge: 7 * 24 * time.Hour, Duplicates: 10 * time.Minute,
		},
		"COUNCIL_TOKENS": {
			Subjects: []string{"council.stream.>"}, Storage: jetstream.MemoryStorage,
			Retention: jetstream.LimitsPolicy, MaxAge: time.Hour, Duplicates: 2 * time.Minute, // server default, capped by max age
		},
	} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		cfg := s.CachedInfo().Config
		got := streamView{cfg.Subjects, cfg.Storage, cfg.Retention, cfg.MaxAge, cfg.Duplicates}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("stream %s config (-want +got):\n%s", name, diff)
		}
	}

	kv, err := js.KeyValue(ctx, "council-deliberations")
	if err != nil {
		t.Fatalf("bucket: %v", err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatalf("bucket status: %v", err)
	}
	if st.History() != 1 {
		t.Errorf("bucket history = %d, want 1", st.History())
	}
	if st.TTL() != natsjs.DefaultBucketTTL {
		t.Errorf("bucket TTL = %s, want %s: state is bounded", st.TTL(), natsjs.DefaultBucketTTL)
	}
}

func TestSetupCustomNames(t *testing.T) {
	_, _, js := natstest.Start(t)
	ctx := ctxTimeout(t)
	topo := natsjs.Topology{
		EventsStream: "EV", EventsSubjectPrefix: "x.events",
		TokensStream: "TK", TokensSubjectPrefix: "x.tokens", Bucket: "delibs",
	}
	if err := natsjs.Setup(ctx, js, topo); err != nil {
		t.Fatalf("Setup: %v", err)
	}
	for _, name := range []string{"EV", "TK", "KV_delibs"} {
		if _, err := js.Stream(ctx, name); err != nil {
			t.Errorf("stream %s: %v", name, err)
		}
	}
	if got, want := topo.EventSubject("dev.council.a.v1"), "x.events.dev.council.a.v1"; got != want {
		t.Errorf("EventSubject = %q, want %q", got, want)
	}
	if got, want := topo.TokenSubject("d1", "a1"), "x.tokens.d1.a1"; got != want {
		t.Errorf("TokenSubject = %q, want %q", got, want)
	}
}

func TestSetupRejectsBadTopology(t *testing.T) {
	_, _, js := natstest.Start(t)
	for name, topo := range map[string]natsjs.Topology{
		"wildcard prefix":  {EventsSubjectPrefix: "council.*"},
		"same prefixes":    {EventsSubjectPrefix: "a", TokensSubjectPrefix: "a"},
		"dotted stream":    {EventsStream: "A.B"},
		"window above age": {EventsMaxAge: time.Minute, DuplicateWindow: time.Hour},
	} {
		t.Run(name, func(t *testing.T) {
			err := natsjs.Setup(ctxTimeout(t), js, topo)
			if !errors.Is(err, council.ErrInvalid) {
				t.Errorf("Setup = %v, want ErrInvalid", err)
			}
		})
	}
}

// TestSetupOverAnIncompatibleStreamIsPermanent: a tokens stream that
// exists on file storage cannot be turned into the memory stream council
// wants; NATS answers 500 "can not change storage type" (code 10052), which
// is permanent: retrying changes nothing.
func TestSetupOverAnIncompatibleStreamIsPermanent(t *testing.T) {
	_, _, js := natstest.Start(t)
	ctx := ctxTimeout(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: natsjs.DefaultTokensStream, Subjects: []string{natsjs.DefaultTokensSubjectPrefix + ".>"},
		Storage: jetstream.FileStorage,
	}); err != nil {
		t.Fatal(err)
	}
	err := natsjs.Setup(ctx, js, natsjs.Topology{})
	if !errors.Is(err, council.ErrInvalid) || council.Retryable(err) {
		t.Fatalf("Setup over a file-storage tokens stream = %v, want a permanent ErrInvalid", err)
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != 10052 {
		t.Errorf("Setup error %v does not carry the server's error 10052", err)
	}
}
