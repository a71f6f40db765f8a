package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"council.dev/events"
	"council.dev/shared/council"
)

// decoders maps each event type to the decoder of its data.
var decoders = map[string]func(event.Event) error{
	events.TypeDeliberationRequested: func(e event.Event) error { _, err := events.DecodeRequest(e); return err },
	events.TypeDeliberationAccepted:  func(e event.Event) error { _, err := events.DecodeAccepted(e); return err },
	events.TypeProposalRequested:     func(e event.Event) error { _, err := events.DecodeProposalRequested(e); return err },
	events.TypeProposalGenerated: func(e event.Event) error {
		_, _, _, err := events.DecodeProposalGenerated(e)
		return err
	},
	events.TypeProposalFailed:    func(e event.Event) error { _, err := events.DecodeWorkFailure(e); return err },
	events.TypeCritiqueRequested: func(e event.Event) error { _, err := events.DecodeCritiqueRequested(e); return err },
	events.TypeCritiqueCompleted: func(e event.Event) error {
		_, _, _, err := events.DecodeCritiqueCompleted(e)
		return err
	},
	events.TypeCritiqueFailed:        func(e event.Event) error { _, err := events.DecodeWorkFailure(e); return err },
	events.TypeDeliberationCompleted: func(e event.Event) error { _, err := events.DecodeCompleted(e); return err },
	events.TypeDeliberationFailed:    func(e event.Event) error { _, err := events.DecodeFailed(e); return err },
	events.TypeSweepTick:             func(e event.Event) error { _, err := events.DecodeTick(e); return err },
	events.TypeDeliberationCancel:    func(e event.Event) error { _, _, err := events.DecodeCancel(e); return err },
	events.TypeDeliberationCancelled: func(e event.Event) error { _, err := events.DecodeCancelled(e); return err },
	events.TypeReviewRequested:       func(e event.Event) error { _, err := events.DecodeReviewRequested(e); return err },
	events.TypeReviewDecided:         func(e event.Event) error { _, _, err := events.DecodeReviewDecided(e); return err },
	events.TypePing:                  func(e event.Event) error { _, err := events.DecodeTick(e); return err },
}

// schemaAccepts lists the invalid fixtures whose data the JSON Schema of
// their type cannot reject: the rule lives in the decoder (council.Task.Validate)
// or outside the data.
var schemaAccepts = map[string]bool{
	"deliberation.requested.v1/invalid/bad_backlog_task_id.json":              true, // backlog id form: Validate
	"deliberation.requested.v1/invalid/duplicate_agent_ids.json":              true, // unique ids: Validate
	"deliberation.requested.v1/invalid/too_many_peers.json":                   true, // peers < agents: Validate
	"deliberation.requested.v1/invalid/review_with_ray.json":                  true, // review and backend: Validate
	"deliberation.requested.v1/invalid/budget_below_first_proposals.json":     true, // budget ≥ agents: Validate
	"deliberation.requested.v1/invalid/final_review_all_too_many_agents.json": true, // all pairs ≤ 16 agents: Validate
	"deliberation.requested.v1/invalid/wrong_content_type.json":               true, // an attribute, not data
	"deliberation.requested.v1/invalid/wrong_event_type.json":                 true, // an attribute, not data
	"proposal.requested.v1/invalid/agent_not_in_task.json":                    true, // membership: decoder
	"proposal.requested.v1/invalid/debate_without_candidates.json":            true, // mode and candidates: decoder
	"deliberation.requested.v1/invalid/judge_without_judge.json":              true, // judge for protocol judge: Validate
	"deliberation.requested.v1/invalid/judge_not_an_agent.json":               true, // judge among agents: Validate
	"deliberation.requested.v1/invalid/vote_one_agent.json":                   true, // agents for vote: Validate
	"critique.requested.v1/invalid/reviewer_not_in_task.json":                 true, // membership: decoder
	// Ids as NATS tokens (council.CheckWorkIDs): the decoder, so that the
	// schemas independent consumers read stay as they were.
	"proposal.requested.v1/invalid/wildcard_deliberation_id.json": true,
	"critique.requested.v1/invalid/wildcard_deliberation_id.json": true,
}

// typeOfDir returns the event type whose fixtures live in dir.
func typeOfDir(dir string) string {
	if dir == events.TypePing {
		return dir
	}
	return events.Prefix + dir
}

func compileSchema(t *testing.T, eventType string) *jsonschema.Schema {
	t.Helper()
	b, ok := events.Schema(eventType)
	if !ok {
		t.Fatalf("no schema for %s", eventType)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("schema of %s is not JSON: %v", eventType, err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	url := "https://council.dev/events/schemas/" + eventType + ".json"
	if err := c.AddResource(url, doc); err != nil {
		t.Fatalf("schema of %s: %v", eventType, err)
	}
	s, err := c.Compile(url)
	if err != nil {
		t.Fatalf("schema of %s does not compile: %v", eventType, err)
	}
	return s
}

// validateData validates data against the schema of eventType.
func validateData(t *testing.T, s *jsonschema.Schema, data []byte) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	return s.Validate(inst)
}

func fixtureFiles(t *testing.T, dir, kind string) []string {
	t.Helper()
	matches, err := fs.Glob(events.Fixtures(), path.Join(dir, kind, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	return matches
}

func TestEveryTypeHasSchemaAndValidFixture(t *testing.T) {
	var missing []string
	for _, typ := range events.Types() {
		if _, ok := events.Schema(typ); !ok {
			missing = append(missing, "schema schemas/"+typ+".json")
		}
		if len(fixtureFiles(t, events.ShortName(typ), "valid")) == 0 {
			missing = append(missing, "valid fixture fixtures/"+events.ShortName(typ)+"/valid/*.json")
		}
	}
	// Every inbound type of the functions has invalid fixtures too.
	for _, typ := range []string{events.TypeDeliberationRequested, events.TypeProposalRequested, events.TypeCritiqueRequested,
		events.TypeProposalGenerated, events.TypeCritiqueCompleted, events.TypeProposalFailed, events.TypeCritiqueFailed} {
		if len(fixtureFiles(t, events.ShortName(typ), "invalid")) == 0 {
			missing = append(missing, "invalid fixture fixtures/"+events.ShortName(typ)+"/invalid/*.json")
		}
	}
	if len(missing) > 0 {
		t.Fatalf("missing contract artefacts:\n  %s", strings.Join(missing, "\n  "))
	}
}

func TestFixtureDirectoriesAreKnownTypes(t *testing.T) {
	entries, err := fs.ReadDir(events.Fixtures(), ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, ok := decoders[typeOfDir(e.Name())]; !ok || !e.IsDir() {
			t.Errorf("fixtures/%s is not the directory of a known event type", e.Name())
		}
	}
}

func TestValidFixturesMatchSchemaAndDecode(t *testing.T) {
	entries, err := fs.ReadDir(events.Fixtures(), ".")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, dir := range entries {
		typ := typeOfDir(dir.Name())
		var schema *jsonschema.Schema
		if typ != events.TypePing {
			schema = compileSchema(t, typ)
		}
		for _, file := range fixtureFiles(t, dir.Name(), "valid") {
			n++
			t.Run(file, func(t *testing.T) {
				e, err := events.LoadFixture(file)
				if err != nil {
					t.Fatal(err)
				}
				if err := e.Validate(); err != nil {
					t.Errorf("not a valid CloudEvent: %v", err)
				}
				if e.Type() != typ {
					t.Errorf("type = %q, want %q (the directory's type)", e.Type(), typ)
				}
				if schema != nil && len(e.Data()) > 0 {
					if err := validateData(t, schema, e.Data()); err != nil {
						t.Errorf("data does not match the schema of %s: %v", typ, err)
					}
				}
				if err := decoders[typ](e); err != nil {
					t.Errorf("decode: %v", err)
				}
			})
		}
	}
	if n == 0 {
		t.Fatal("no valid fixtures found")
	}
}

func TestInvalidFixturesAreRejected(t *testing.T) {
	entries, err := fs.ReadDir(events.Fixtures(), ".")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, dir := range entries {
		typ := typeOfDir(dir.Name())
		for _, file := range fixtureFiles(t, dir.Name(), "invalid") {
			seen[file] = true
			t.Run(file, func(t *testing.T) {
				e, err := events.LoadFixture(file)
				if err != nil {
					t.Fatal(err)
				}
				expect, err := fs.ReadFile(events.Fixtures(), strings.TrimSuffix(file, ".json")+".expect")
				if err != nil {
					t.Fatalf("no .expect sidecar: %v", err)
				}
				want := strings.TrimSpace(string(expect))
				if want == "" {
					t.Fatal(".expect sidecar is empty")
				}
				err = decoders[typ](e)
				switch {
				case err == nil:
					t.Fatalf("decoded without error, want an error containing %q", want)
				case !errors.Is(err, council.ErrInvalid):
					t.Errorf("error %q does not wrap council.ErrInvalid", err)
				case !strings.Contains(err.Error(), want):
					t.Errorf("error %q does not contain %q", err, want)
				}
				if typ == events.TypePing || len(e.Data()) == 0 {
					return
				}
				serr := validateData(t, compileSchema(t, typ), e.Data())
				switch {
				case schemaAccepts[file] && serr != nil:
					t.Errorf("listed as accepted by the schema, but the schema rejects it: %v", serr)
				case !schemaAccepts[file] && serr == nil:
					t.Errorf("the schema of %s accepts this invalid data; tighten the schema or list it in schemaAccepts", typ)
				}
			})
		}
	}
	for file := range schemaAccepts {
		if !seen[file] {
			t.Errorf("schemaAccepts names %s, which is not an invalid fixture", file)
		}
	}
	// Every .expect has its fixture.
	expects, _ := fs.Glob(events.Fixtures(), "*/invalid/*.expect")
	for _, x := range expects {
		if !seen[strings.TrimSuffix(x, ".expect")+".json"] {
			t.Errorf("%s has no fixture", x)
		}
	}
}

func TestOversizedDataIsRejected(t *testing.T) {
	big := strings.Repeat("z", events.MaxDataBytes)
	task := council.Task{ID: "task-1", Description: big, Role: "DEV", Kind: council.KindTaskExtraction,
		Agents: []council.Agent{{ID: "a", Role: "DEV"}}}
	e := events.ToEvent(events.NewRequest("test", "big-1", task, time.Now()))
	_, err := events.DecodeRequest(e)
	if !errors.Is(err, council.ErrInvalid) || !strings.Contains(err.Error(), fmt.Sprintf("more than the %d allowed", events.MaxDataBytes)) {
		t.Errorf("DecodeRequest(%d bytes) error = %v, want the size limit", len(e.Data()), err)
	}
	for typ, decode := range decoders {
		if typ == events.TypePing {
			continue
		}
		e := event.New()
		e.SetID("big")
		e.SetSource("test")
		e.SetType(typ)
		limit := events.MaxDataBytes
		if typ == events.TypeDeliberationCompleted || typ == events.TypeDeliberationFailed ||
			typ == events.TypeDeliberationCancelled || typ == events.TypeReviewRequested {
			limit = events.MaxResultBytes
		}
		e.DataEncoded = []byte(`{"padding":"` + strings.Repeat("p", limit) + `"}`)
		e.SetDataContentType(event.ApplicationJSON)
		if err := decode(e); !errors.Is(err, council.ErrInvalid) || !strings.Contains(err.Error(), "allowed") {
			t.Errorf("%s: oversized data: error = %v, want the size limit", typ, err)
		}
	}
}

// payloadTypes maps each type to the struct of its data.
var payloadTypes = map[string]any{
	events.TypeDeliberationRequested: events.Request{},
	events.TypeDeliberationAccepted:  events.Accepted{},
	events.TypeProposalRequested:     events.ProposalRequested{},
	events.TypeProposalGenerated:     events.ProposalGenerated{},
	events.TypeProposalFailed:        events.ProposalFailed{},
	events.TypeCritiqueRequested:     events.CritiqueRequested{},
	events.TypeCritiqueCompleted:     events.CritiqueCompleted{},
	events.TypeCritiqueFailed:        events.CritiqueFailed{},
	events.TypeDeliberationCompleted: events.Completed{},
	events.TypeDeliberationFailed:    events.Failed{},
	events.TypeSweepTick:             events.Tick{},
	events.TypeDeliberationCancel:    events.Cancel{},
	events.TypeDeliberationCancelled: events.Cancelled{},
	events.TypeReviewRequested:       events.ReviewRequested{},
	events.TypeReviewDecided:         events.ReviewDecided{},
}

// TestSchemasMatchStructs keeps the schemas and the payload structs in
// step: the same properties, required exactly when the field is not
// omitempty/omitzero, no additional properties, compatible JSON types.
func TestSchemasMatchStructs(t *testing.T) {
	for _, typ := range events.Types() {
		b, ok := events.Schema(typ)
		if !ok {
			t.Errorf("no schema for %s", typ)
			continue
		}
		var root map[string]any
		if err := json.Unmarshal(b, &root); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if root["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
			t.Errorf("%s: $schema = %v, want draft 2020-12", typ, root["$schema"])
		}
		defs, _ := root["$defs"].(map[string]any)
		compareSchema(t, typ, root, defs, reflect.TypeOf(payloadTypes[typ]))
	}
}

func compareSchema(t *testing.T, at string, s map[string]any, defs map[string]any, gt reflect.Type) {
	t.Helper()
	if ref, ok := s["$ref"].(string); ok {
		def, ok := defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
		if !ok {
			t.Errorf("%s: unresolved $ref %s", at, ref)
			return
		}
		s = def
	}
	for gt.Kind() == reflect.Pointer {
		gt = gt.Elem()
	}
	want := schemaType(gt)
	if got, ok := s["type"]; ok && want != "" {
		if got != want && (want != "object" || gt != reflect.TypeFor[json.RawMessage]()) {
			t.Errorf("%s: schema type %v, Go type %s is JSON %s", at, got, gt, want)
		}
	}
	switch {
	case gt == reflect.TypeFor[time.Time]() || gt == reflect.TypeFor[json.RawMessage]():
	case gt.Kind() == reflect.Struct:
		props, _ := s["properties"].(map[string]any)
		if s["additionalProperties"] != false {
			t.Errorf("%s: additionalProperties is not false", at)
		}
		var fields, required []string
		for i := range gt.NumField() {
			f := gt.Field(i)
			tag := f.Tag.Get("json")
			name, opts, _ := strings.Cut(tag, ",")
			fields = append(fields, name)
			if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") &&
				f.Tag.Get("schema") != "optional" {
				required = append(required, name)
			}
			p, ok := props[name].(map[string]any)
			if !ok {
				t.Errorf("%s: schema has no property %q", at, name)
				continue
			}
			compareSchema(t, at+"."+name, p, defs, f.Type)
		}
		var names []string
		for name := range props {
			names = append(names, name)
		}
		sort.Strings(fields)
		sort.Strings(names)
		if diff := cmp.Diff(fields, names); diff != "" {
			t.Errorf("%s: properties differ from the struct fields (-struct +schema):\n%s", at, diff)
		}
		var schemaRequired []string
		for _, r := range s["required"].([]any) {
			schemaRequired = append(schemaRequired, r.(string))
		}
		sort.Strings(required)
		sort.Strings(schemaRequired)
		if diff := cmp.Diff(required, schemaRequired); diff != "" {
			t.Errorf("%s: required differs from the non-omitempty fields (-struct +schema):\n%s", at, diff)
		}
	case gt.Kind() == reflect.Slice:
		if items, ok := s["items"].(map[string]any); ok {
			compareSchema(t, at+"[]", items, defs, gt.Elem())
		}
	}
}

func schemaType(t reflect.Type) string {
	if t == reflect.TypeFor[time.Time]() {
		return "string"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int64:
		return "integer"
	case reflect.Float64:
		return "number"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "object"
		}
		return "array"
	case reflect.Struct, reflect.Map:
		return "object"
	}
	return ""
}

func TestSchemaOfUnknownType(t *testing.T) {
	if _, ok := events.Schema("dev.council.nope.v1"); ok {
		t.Error("Schema of an unknown type reported ok")
	}
	if _, ok := events.Schema(events.TypePing); ok {
		t.Error("Schema of the PingSource type reported ok; its data is not ours")
	}
}

func TestLoadFixtureErrors(t *testing.T) {
	if _, err := events.LoadFixture("deliberation.requested.v1/valid/nope.json"); err == nil {
		t.Error("LoadFixture of a missing file: no error")
	}
	if _, err := events.LoadFixture("deliberation.requested.v1/invalid/oversized_description.expect"); err == nil {
		t.Error("LoadFixture of a text file: no error")
	}
}

func TestAsyncAPIDescribesEveryType(t *testing.T) {
	b, err := os.ReadFile("asyncapi.yaml")
	if err != nil {
		t.Fatalf("asyncapi.yaml: %v", err)
	}
	doc := string(b)
	want := []string{"asyncapi: 3.0.0", "council.stream.{deliberation}.{agent}", events.TypePing}
	for _, typ := range events.Types() {
		want = append(want, "council.events."+typ, "./schemas/"+typ+".json")
	}
	want = append(want, "orchestrator", "execute", "generate", "critique") // the roles
	var missing []string
	for _, w := range want {
		if !strings.Contains(doc, w) {
			missing = append(missing, w)
		}
	}
	if len(missing) > 0 {
		t.Errorf("asyncapi.yaml does not mention:\n  %s", strings.Join(missing, "\n  "))
	}
	if strings.Contains(doc, "\t") {
		t.Error("asyncapi.yaml contains a tab; YAML indents with spaces")
	}
}

func TestTypes(t *testing.T) {
	types := events.Types()
	if len(types) != 15 {
		t.Errorf("Types() has %d types, want 15", len(types))
	}
	if slices.Contains(types, events.TypePing) {
		t.Error("Types() lists TypePing")
	}
	for _, typ := range types {
		if !strings.HasPrefix(typ, "dev.council.") || !strings.HasSuffix(typ, ".v1") {
			t.Errorf("type %q is not dev.council.<name>.v1", typ)
		}
		if got := events.ShortName(typ); got != strings.TrimPrefix(typ, "dev.council.") {
			t.Errorf("ShortName(%q) = %q", typ, got)
		}
	}
	if got := events.ShortName(events.TypePing); got != events.TypePing {
		t.Errorf("ShortName(TypePing) = %q", got)
	}
}
