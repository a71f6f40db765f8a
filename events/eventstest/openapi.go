package eventstest

import (
	"bytes"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"

	"council.dev/events"
)

// OpenAPIURL is where OpenAPI's compiler holds the document.
const OpenAPIURL = "https://council.dev/events/openapi.json"

// OpenAPI parses events.OpenAPI() (YAML) into its JSON form and a compiler
// that holds it at OpenAPIURL, so that any schema in it compiles by JSON
// pointer (OpenAPI 3.1 schemas are JSON Schema 2020-12), formats asserted.
func OpenAPI(t testing.TB) (map[string]any, *jsonschema.Compiler) {
	t.Helper()
	j, err := yaml.YAMLToJSON(events.OpenAPI())
	if err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(OpenAPIURL, doc); err != nil {
		t.Fatal(err)
	}
	return doc.(map[string]any), c
}
