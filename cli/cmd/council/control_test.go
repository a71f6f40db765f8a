package main

import (
	"context"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"council.dev/cli/stack"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

func TestControlUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"cancel"}, "want one deliberation ID"},
		{[]string{"cancel", "dlb-1"}, "want exactly one of -nats URL (JetStream) and -to URL (HTTP)"},
		{[]string{"cancel", "a.*", "-nats", "nats://a"}, "deliberation id"},
		{[]string{"review", "dlb-1", "-nats", "nats://a"}, "want ID and approve, reject or feedback"},
		{[]string{"review", "dlb-1", "maybe", "-nats", "nats://a"}, `decision "maybe" is unknown`},
		{[]string{"review", "dlb-1", "reject", "-nats", "nats://a"}, "a reject needs a reason"},
		{[]string{"review", "dlb-1", "feedback", "-nats", "nats://a"}, "needs a feedback text"},
	} {
		r := runCLI(t, "", tt.args...).must(t, 2)
		if !strings.Contains(r.err, tt.want) {
			t.Errorf("%q: stderr %q lacks %q", tt.args, r.err, tt.want)
		}
	}
	for _, c := range []string{"cancel", "review"} {
		r := runCLI(t, "", c, "-h").must(t, 0)
		if !strings.Contains(r.err, "-nats") || !strings.Contains(r.err, "-timeout") {
			t.Errorf("%s -h: stderr lacks the flags:\n%s", c, r.err)
		}
	}
	if r := runCLI(t, "", "help").must(t, 0); !strings.Contains(r.stdout, "council cancel") || !strings.Contains(r.stdout, "council review") {
		t.Errorf("help lacks cancel and review:\n%s", r.stdout)
	}
}

// TestCancelAndReviewOverJetStream runs the CLI's control commands against
// the in-process stack (fake model: this checks the wiring; test/ runs the
// same on the real LLM server).
func TestCancelAndReviewOverJetStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var block atomic.Bool
	release := make(chan struct{})
	llm := &counciltest.Completer{CompleteFunc: func(ctx context.Context, req council.CompletionRequest) (council.Completion, error) {
		if block.Load() {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return council.Completion{}, council.Unavailablef("released")
		}
		return counciltest.Answer(req), nil
	}}
	s, err := stack.Start(ctx, stack.Config{Completer: llm, StoreDir: t.TempDir(), SweepEvery: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	t.Cleanup(func() { close(release) })
	exec := httptest.NewServer(s.Execute().QueryHandler())
	t.Cleanup(exec.Close)
	idOf := func(out string) string {
		t.Helper()
		m := regexp.MustCompile(`deliberation (dlb-[0-9a-f]+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no deliberation id in:\n%s", out)
		}
		return m[1]
	}
	waitPhase := func(id, want string) {
		t.Helper()
		var last string
		if !counciltest.Within(time.Minute, 100*time.Millisecond, func() bool {
			last = runCLI(t, "", "status", id, "-execute", exec.URL).stdout
			return strings.Contains(last, want)
		}) {
			t.Fatalf("status never showed %q:\n%s", want, last)
		}
	}

	// The review gate: the budget (max_calls 12 of 3 agents × 3 calls per
	// stage) ends the rounds after stage 0, the gate waits, approve ends it.
	id := idOf(runCLI(t, "", "send", "deliberation.requested.v1/valid/budget_and_review.json", "-nats", s.URL).must(t, 0).stdout)
	waitPhase(id, "awaiting_review")
	runCLI(t, "", "review", id, "approve", "-nats", s.URL, "-reviewer", "ana").must(t, 0)
	w := runCLI(t, "", "watch", "-nats", s.URL, "-deliberation", id, "-until-done", "-timeout", "1m").must(t, 0)
	for _, want := range []string{"review.requested.v1", "round 1 · stage 0 · 3 candidate(s)", "review.decided.v1", "approve by ana", "deliberation.completed.v1"} {
		if !strings.Contains(w.stdout, want) {
			t.Errorf("watch output lacks %q:\n%s", want, w.stdout)
		}
	}

	// Cancel while the calls hang: one cancelled event, watch says so.
	block.Store(true)
	id = idOf(runCLI(t, "", "send", "deliberation.requested.v1/valid/deliberation.json", "-nats", s.URL).must(t, 0).stdout)
	waitPhase(id, "proposing")
	runCLI(t, "", "cancel", id, "-reason", "changed my mind", "-nats", s.URL).must(t, 0)
	// The second cancel after the first has ended it: both are events, and
	// execute may take two events of one deliberation in either order, so
	// only a cancel of an ended deliberation has a known outcome (none).
	waitPhase(id, "cancelled")
	runCLI(t, "", "cancel", id, "-nats", s.URL).must(t, 0)
	w = runCLI(t, "", "watch", "-nats", s.URL, "-deliberation", id, "-until-done", "-timeout", "1m").must(t, 1)
	if n := strings.Count(w.stdout, "deliberation.cancelled.v1"); n != 1 || !strings.Contains(w.err, "cancelled: changed my mind") {
		t.Errorf("%d cancelled lines; watch:\n%s\n%s", n, w.stdout, w.err)
	}
}
