package eval

import (
	"regexp"
	"strings"
)

// fencedBlock matches a Markdown code block; the group is its body.
var fencedBlock = regexp.MustCompile("(?s)```[^\n`]*\n(.*?)```")

// ExtractCode is the code of an answer: the last fenced code block that
// defines the problem's function, else the last fenced block, else the
// whole text.
func ExtractCode(p Problem, answer string) string {
	blocks := fencedBlock.FindAllStringSubmatch(answer, -1)
	for i := len(blocks) - 1; i >= 0; i-- {
		if defines(blocks[i][1], p.EntryPoint) {
			return blocks[i][1]
		}
	}
	if len(blocks) > 0 {
		return blocks[len(blocks)-1][1]
	}
	return answer
}

// Program is the Python program to test for an answer: the problem's
// prompt (its imports and helper functions) followed by the answer's code
// when that defines the function again, or by the code as the body of the
// prompt's function when it does not (indented when it is not).
func Program(p Problem, answer string) string {
	code := ExtractCode(p, answer)
	if defines(code, p.EntryPoint) {
		return p.Prompt + "\n\n" + code
	}
	return p.Prompt + asBody(code)
}

// defines reports whether code has a top-level or nested def of name.
func defines(code, name string) bool {
	for line := range strings.Lines(code) {
		if strings.HasPrefix(strings.TrimLeft(line, " \t"), "def "+name+"(") {
			return true
		}
	}
	return false
}

// asBody indents code by four spaces unless its first line already is
// indented.
func asBody(code string) string {
	code = strings.TrimLeft(code, "\n")
	if code == "" || strings.HasPrefix(code, " ") || strings.HasPrefix(code, "\t") {
		return code
	}
	var b strings.Builder
	for line := range strings.Lines(code) {
		if strings.TrimSpace(line) != "" {
			b.WriteString("    ")
		}
		b.WriteString(line)
	}
	return b.String()
}
