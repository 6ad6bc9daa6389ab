package config

import (
	"bytes"
	"regexp"
	"strconv"

	"go.yaml.in/yaml/v3"
)

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// syntaxError turns a YAML syntax error into an *Error at the line where the
// problem is. The parser reports the line where the enclosing structure began,
// 0-based, for parser errors (go-yaml v3's parser.fail), so a misindented key
// on line 4 of a list that starts on line 2 comes out as "line 1". The first
// prefix of the document that fails with the same message ends on the line
// to show.
func syntaxError(data []byte, err error) *Error {
	msg, line := splitYAMLError(err)
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) <= 5000 {
		var prefix []byte
		for i, l := range lines {
			prefix = append(prefix, l...)
			var n yaml.Node
			if e := yaml.Unmarshal(prefix, &n); e != nil {
				if m, _ := splitYAMLError(e); m == msg {
					line = i + 1
					break
				}
			}
		}
	}
	return &Error{Line: line, Msg: "yaml: " + msg}
}

func splitYAMLError(err error) (msg string, line int) {
	s := err.Error()
	if m := yamlLine.FindStringSubmatch(s); m != nil {
		line, _ = strconv.Atoi(m[1])
		return s[len(m[0]):], line
	}
	return s, 0
}
