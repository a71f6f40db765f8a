package events_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"council.dev/events"
	"council.dev/shared/council"
)

func TestTokenMessagesRoundTrip(t *testing.T) {
	for _, c := range []council.TokenChunk{
		{DeliberationID: "dlb-1", AgentID: "dev-1", Stage: 1, Attempt: 2, Seq: 3, Text: "héllo \"world\"\n"},
		{DeliberationID: "dlb-1", AgentID: "dev-1", Stage: 1, Seq: 4, Final: true},
	} {
		b, err := events.EncodeToken(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := events.DecodeToken(b)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(c, got); diff != "" {
			t.Errorf("round trip of %s (-want +got):\n%s", b, diff)
		}
	}
	if _, err := events.DecodeToken([]byte(`{"seq":"x"}`)); !errors.Is(err, council.ErrInvalid) {
		t.Errorf("bad message: %v, want ErrInvalid", err)
	}
}
