package events

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"council.dev/shared/council"
)

// Validator checks JSON documents against one JSON Schema (draft 2020-12,
// formats asserted). It is safe for concurrent use.
type Validator struct {
	schema *jsonschema.Schema
}

// CompileSchema compiles the JSON Schema document schema, named name in
// errors. An error wraps council.ErrInvalid.
func CompileSchema(name string, schema []byte) (*Validator, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, council.Invalidf("schema %s is not JSON: %v", name, err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat() // date-time fields are RFC 3339 times
	url := "https://council.dev/schemas/" + name + ".json"
	if err := c.AddResource(url, doc); err != nil {
		return nil, council.Invalidf("schema %s: %v", name, err)
	}
	s, err := c.Compile(url)
	if err != nil {
		return nil, council.Invalidf("schema %s does not compile: %v", name, err)
	}
	return &Validator{schema: s}, nil
}

// Validate checks the JSON document doc. The error wraps council.ErrInvalid
// and names every field at fault, in the codec's words: "field
// agents[1].role is required", "field stage: expected integer, got JSON
// string", "unknown field \"x\"", "field overall: maximum: got 943, want 10".
func (v *Validator) Validate(doc []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return council.Invalidf("data is not valid JSON: %v", err)
	}
	verr := v.schema.Validate(inst)
	if verr == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(verr, &ve) {
		return council.Invalidf("data: %v", verr)
	}
	var msgs []string
	leaves(ve, &msgs)
	slices.Sort(msgs)
	msgs = slices.Compact(msgs)
	return council.Invalidf("%s", strings.Join(msgs, "; "))
}

// compiledSchemas holds the validator of every event type's shipped JSON
// Schema, compiled once on first use. It never changes after that.
var compiledSchemas = sync.OnceValues(func() (map[string]*Validator, error) {
	out := map[string]*Validator{}
	for _, t := range Types() {
		b, ok := Schema(t)
		if !ok {
			continue
		}
		v, err := CompileSchema(t, b)
		if err != nil {
			return nil, fmt.Errorf("events: %w", err)
		}
		out[t] = v
	}
	return out, nil
})

// validate checks data, a JSON object, against the shipped schema of
// eventType (see Validator.Validate for the errors).
func validate(eventType string, data []byte) error {
	schemas, err := compiledSchemas()
	if err != nil {
		return err // a broken embedded schema: a build defect, caught by tests
	}
	if v, ok := schemas[eventType]; ok {
		return v.Validate(data)
	}
	return nil
}

// leaves collects a message for every innermost failure under ve.
func leaves(ve *jsonschema.ValidationError, out *[]string) {
	if len(ve.Causes) > 0 {
		for _, c := range ve.Causes {
			leaves(c, out)
		}
		return
	}
	*out = append(*out, describe(ve.InstanceLocation, ve.ErrorKind))
}

// describe words one failure at the instance location loc.
func describe(loc []string, k jsonschema.ErrorKind) string {
	at := fieldPath(loc)
	switch k := k.(type) {
	case *kind.Required:
		names := make([]string, len(k.Missing))
		for i, m := range k.Missing {
			names[i] = joinField(at, m)
		}
		slices.Sort(names)
		return "field " + strings.Join(names, ", field ") + " is required"
	case *kind.AdditionalProperties:
		quoted := make([]string, len(k.Properties))
		for i, p := range k.Properties {
			quoted[i] = strconv.Quote(p)
		}
		slices.Sort(quoted)
		where := ""
		if at != "" {
			where = " in " + at
		}
		return "unknown field " + strings.Join(quoted, ", ") + where
	case *kind.Type:
		if k.Got == "null" {
			return "field " + at + " is required"
		}
		return fmt.Sprintf("field %s: expected %s, got JSON %s", orData(at), strings.Join(k.Want, " or "), k.Got)
	}
	return fmt.Sprintf("field %s: %s", orData(at), k.LocalizedString(message.NewPrinter(language.English)))
}

// fieldPath turns a JSON pointer's tokens into agents[1].role.
func fieldPath(loc []string) string {
	var b strings.Builder
	for _, tok := range loc {
		if _, err := strconv.Atoi(tok); err == nil {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}

func joinField(at, name string) string {
	if at == "" {
		return name
	}
	return at + "." + name
}

func orData(at string) string {
	if at == "" {
		return "data"
	}
	return at
}
