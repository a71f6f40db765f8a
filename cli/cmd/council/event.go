package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/events"
)

// loadFixture reads a structured CloudEvent from path: a path in the events
// fixtures ("deliberation.requested.v1/valid/minimal.json") or a file.
func loadFixture(path string) (event.Event, error) {
	if _, err := fs.Stat(events.Fixtures(), path); err == nil {
		return events.LoadFixture(path)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return event.Event{}, fmt.Errorf("fixture %s: not in the events fixtures (council fixtures lists them) and not a readable file: %w", path, err)
	}
	return parseEvent(path, raw)
}

// readEvent reads a structured CloudEvent from path, or from in when path
// is "-".
func readEvent(path string, in io.Reader) (event.Event, error) {
	if path != "-" {
		return loadFixture(path)
	}
	raw, err := io.ReadAll(io.LimitReader(in, events.MaxResultBytes+64<<10))
	if err != nil {
		return event.Event{}, fmt.Errorf("read stdin: %w", err)
	}
	return parseEvent("stdin", raw)
}

func parseEvent(name string, raw []byte) (event.Event, error) {
	e, err := events.DecodeStructured(raw)
	if err != nil {
		return event.Event{}, fmt.Errorf("%s: %w", name, err)
	}
	return e, nil
}

func listFixtures(stdout io.Writer) error {
	return fs.WalkDir(events.Fixtures(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".json") {
			fmt.Fprintln(stdout, path)
		}
		return nil
	})
}

// validate decodes e with the events codec when its type is one the codec
// decodes, and returns the codec's error. It reports whether it knew the
// type.
func validate(e event.Event) (known bool, err error) {
	switch e.Type() {
	case events.TypeDeliberationRequested:
		_, err = events.DecodeRequest(e)
	case events.TypeDeliberationAccepted:
		_, err = events.DecodeAccepted(e)
	case events.TypeProposalRequested:
		_, err = events.DecodeProposalRequested(e)
	case events.TypeProposalGenerated:
		_, _, _, err = events.DecodeProposalGenerated(e)
	case events.TypeProposalFailed, events.TypeCritiqueFailed:
		_, err = events.DecodeWorkFailure(e)
	case events.TypeCritiqueRequested:
		_, err = events.DecodeCritiqueRequested(e)
	case events.TypeCritiqueCompleted:
		_, _, _, err = events.DecodeCritiqueCompleted(e)
	case events.TypeDeliberationCompleted:
		_, err = events.DecodeCompleted(e)
	case events.TypeDeliberationFailed:
		_, err = events.DecodeFailed(e)
	case events.TypeSweepTick, events.TypePing:
		_, err = events.DecodeTick(e)
	case events.TypeDeliberationCancel:
		_, _, err = events.DecodeCancel(e)
	case events.TypeDeliberationCancelled:
		_, err = events.DecodeCancelled(e)
	case events.TypeReviewRequested:
		_, err = events.DecodeReviewRequested(e)
	case events.TypeReviewDecided:
		_, _, err = events.DecodeReviewDecided(e)
	default:
		return false, nil
	}
	return true, err
}

// freshID returns a new event id, unique across runs and machines.
func freshID(now time.Time) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "cli-" + strconv.FormatInt(now.UnixMilli(), 36) + "-" + hex.EncodeToString(b[:])
}
