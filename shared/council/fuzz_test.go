package council_test

import (
	"errors"
	"math"
	"testing"

	"council.dev/shared/council"
)

// FuzzParseCritique feeds arbitrary model output to the critique parser:
// it never panics; it either refuses the output with ErrBadOutput (a
// retryable failure of that call) or returns a critique whose overall score
// and every rubric score are numbers in [0,1], one per criterion.
func FuzzParseCritique(f *testing.F) {
	for _, s := range []string{
		`{"scores":{"correctness":7,"completeness":8,"clarity":10,"feasibility":6},"overall":8,"strengths":["s"],"issues":["i"],"suggestions":["g"]}`,
		`{"scores":{"correctness":0,"completeness":0,"clarity":0,"feasibility":0},"overall":0}`,
		`{"scores":{"correctness":7.5,"completeness":1e1,"clarity":0.0,"feasibility":1E-3},"overall":9.99}`,
		`{"scores":{"correctness":11},"overall":-1}`,
		`{"scores":[7,7],"overall":7}`,
		`{"scores":{"correctness":"7"},"overall":7}`,
		`{"overall":1e400}`,
		"The proposal is good. 8/10",
		"```json\n{\"overall\":5}\n```",
		"",
	} {
		f.Add(s)
	}
	rubric := council.DefaultRubric()
	f.Fuzz(func(t *testing.T, content string) {
		c, err := council.ParseCritique(content, rubric)
		if err != nil {
			if !errors.Is(err, council.ErrBadOutput) {
				t.Fatalf("error %v does not wrap ErrBadOutput", err)
			}
			return
		}
		in := func(v float64) bool { return !math.IsNaN(v) && v >= 0 && v <= 1 }
		if !in(c.Overall) {
			t.Fatalf("overall %v outside [0,1]", c.Overall)
		}
		if len(c.Scores) != len(rubric) {
			t.Fatalf("%d scores for a rubric of %d", len(c.Scores), len(rubric))
		}
		for _, name := range rubric {
			if v, ok := c.Scores[name]; !ok || !in(v) {
				t.Fatalf("score %s = %v (present %v), want in [0,1]", name, v, ok)
			}
		}
	})
}

// FuzzCheckWorkIDs checks the one validator of ids: whatever it accepts is
// safe as a NATS subject token (deliberation id, agent id) or as dot-joined
// tokens (work key): no wildcard, no whitespace, no empty token.
func FuzzCheckWorkIDs(f *testing.F) {
	for _, s := range [][3]string{
		{"dlb-0123456789abcdef01234567", "p.0.dev-1", "dev-1"},
		{"a.*.>", "p.0.*", "qa 1"},
		{"", "", ""},
		{"x", "c.1.dev-1.qa-1", "arch_1"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, id, key, agent string) {
		err := council.CheckWorkIDs(id, key, agent)
		if err != nil {
			if !errors.Is(err, council.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		for _, s := range []string{id, key, agent} {
			if s == "" || len(s) > 255 {
				t.Fatalf("accepted %q", s)
			}
			for _, r := range s {
				if r == '*' || r == '>' || r <= ' ' || r > '~' {
					t.Fatalf("accepted %q with %q", s, r)
				}
			}
		}
		for _, s := range []string{id, agent} {
			for _, r := range s {
				if r == '.' {
					t.Fatalf("accepted a dotted id %q", s)
				}
			}
		}
	})
}
