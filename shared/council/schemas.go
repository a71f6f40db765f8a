package council

// TaskExtractionSchema is the schema of task extraction output (the old
// service's TASK_EXTRACTION_SCHEMA, bounded so generation terminates).
const TaskExtractionSchema = `{
  "type": "object",
  "properties": {
    "tasks": {
      "type": "array",
      "maxItems": 20,
      "items": {
        "type": "object",
        "properties": {
          "title": {"type": "string", "minLength": 1, "maxLength": 200},
          "description": {"type": "string", "minLength": 1, "maxLength": 2000},
          "estimated_hours": {"type": "integer", "minimum": 1, "maximum": 200},
          "deliberation_indices": {"type": "array", "maxItems": 20, "items": {"type": "integer", "minimum": 0, "maximum": 1000}},
          "priority": {"type": "integer", "minimum": 1, "maximum": 5}
        },
        "required": ["title", "description", "estimated_hours", "priority"],
        "additionalProperties": false
      }
    }
  },
  "required": ["tasks"],
  "additionalProperties": false
}`

// TaskDerivationSchema is the schema of task derivation output: 3 to 8
// atomic tasks of a plan (replaces the old line format, bug B18).
const TaskDerivationSchema = `{
  "type": "object",
  "properties": {
    "tasks": {
      "type": "array",
      "minItems": 1,
      "maxItems": 8,
      "items": {
        "type": "object",
        "properties": {
          "title": {"type": "string", "minLength": 1, "maxLength": 200},
          "description": {"type": "string", "minLength": 1, "maxLength": 2000},
          "role": {"type": "string", "minLength": 1, "maxLength": 40},
          "estimated_hours": {"type": "integer", "minimum": 1, "maximum": 200},
          "priority": {"type": "integer", "minimum": 1, "maximum": 5},
          "keywords": {"type": "array", "maxItems": 10, "items": {"type": "string", "maxLength": 40}}
        },
        "required": ["title", "description", "role", "estimated_hours", "priority"],
        "additionalProperties": false
      }
    }
  },
  "required": ["tasks"],
  "additionalProperties": false
}`

// StructuredSchema returns the output schema of a single-pass kind.
func StructuredSchema(k Kind) (JSONSchema, bool) {
	switch k {
	case KindTaskExtraction:
		return JSONSchema{Name: "TASK_EXTRACTION", Schema: []byte(TaskExtractionSchema), Strict: true}, true
	case KindTaskDerivation:
		return JSONSchema{Name: "TASK_DERIVATION", Schema: []byte(TaskDerivationSchema), Strict: true}, true
	}
	return JSONSchema{}, false
}
