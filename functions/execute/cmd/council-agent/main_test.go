package main

import (
	"encoding/base64"
	"io"
	"os"
	"strings"
	"testing"
)

// runCaptured runs the agent with env and returns its exit status and the
// last line it wrote to stderr.
func runCaptured(t *testing.T, env map[string]string) (int, string) {
	for _, k := range []string{"COUNCIL_REQUEST", "COUNCIL_REQUEST_FILE", "COUNCIL_DELIBERATION_ID"} {
		t.Setenv(k, env[k])
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	code := run()
	os.Stderr = stderr
	_ = w.Close()
	out, _ := io.ReadAll(r)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return code, lines[len(lines)-1]
}

func TestBadInputExitsTwo(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no request", map[string]string{},
			"council-agent: deliberation unknown failed: bad request: invalid: no request"},
		{"bad id", map[string]string{"COUNCIL_DELIBERATION_ID": "a.*"},
			"council-agent: deliberation a.* failed: bad request: COUNCIL_DELIBERATION_ID: invalid"},
		{"not an event", map[string]string{"COUNCIL_DELIBERATION_ID": "dlb-2",
			"COUNCIL_REQUEST": base64.StdEncoding.EncodeToString([]byte(`"hello"`))},
			"council-agent: deliberation dlb-2 failed: bad request: the request: invalid: not a structured CloudEvent"},
		{"missing file", map[string]string{"COUNCIL_REQUEST_FILE": "nope.json"},
			"council-agent: deliberation unknown failed: bad request: invalid: COUNCIL_REQUEST_FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, last := runCaptured(t, tc.env)
			if code != exitBadInput || !strings.HasPrefix(last, tc.want) {
				t.Errorf("exit %d, last line %q; want %d and %q…", code, last, exitBadInput, tc.want)
			}
		})
	}
}
