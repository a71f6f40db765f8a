package main

import (
	"strings"
	"testing"
)

// TestEvalRefusesBadFlags: a mistake on the command line is a usage error
// (exit 2) that names the flag, before any dataset or server is touched.
func TestEvalRefusesBadFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"eval", "-protocols", "vote,chess"}, `-protocols: "chess" is not a protocol`},
		{[]string{"eval", "-tasks", "mbpp:3"}, `unknown task set "mbpp"`},
		{[]string{"eval", "-tasks", "humaneval:0"}, "want humaneval, humaneval:N or humaneval:N@SEED"},
		{[]string{"eval", "-agents", "0"}, "-agents 0"},
		{[]string{"eval", "-budget", "-1"}, "-budget -1"},
		{[]string{"eval", "extra"}, "unexpected arguments"},
	} {
		r := runCLI(t, "", tt.args...).must(t, 2)
		if !strings.Contains(r.err, tt.want) {
			t.Errorf("%q: stderr %q lacks %q", tt.args, r.err, tt.want)
		}
	}
	r := runCLI(t, "", "eval", "-h").must(t, 0)
	for _, f := range []string{"-protocols", "-tasks", "-budget", "-llm", "-json"} {
		if !strings.Contains(r.err, f) {
			t.Errorf("eval -h lacks %s:\n%s", f, r.err)
		}
	}
}
