package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is a configuration error located at a key path and a line of the file.
type Error struct {
	Path string // key path, e.g. "upstreams.brokers.balance" or "listeners[0].tls.cert"
	Line int    // 1-based line in the file; 0 when unknown
	Msg  string
}

func (e *Error) Error() string {
	switch {
	case e.Path == "" && e.Line > 0:
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	case e.Path == "":
		return e.Msg
	case e.Line > 0:
		return fmt.Sprintf("%s (line %d): %s", e.Path, e.Line, e.Msg)
	default:
		return fmt.Sprintf("%s: %s", e.Path, e.Msg)
	}
}

// ScalarDecoder is implemented by types decoded from one YAML scalar
// (durations, sizes, enumerations with their own parsing).
type ScalarDecoder interface {
	DecodeScalar(s string) error
}

// Lines records, for every key path seen in a document, the line it was on.
// It doubles as the record of which keys were set, so defaults can apply only
// to keys the file left out.
type Lines map[string]int

// Set reports whether the file set the key at path.
func (l Lines) Set(path string) bool {
	_, ok := l[path]
	return ok
}

// Errorf builds an *Error at path, with the line the key was on (or the line
// of the nearest enclosing key that was set).
func (l Lines) Errorf(path, format string, args ...any) *Error {
	line := 0
	for p := path; p != ""; p = parentPath(p) {
		if n, ok := l[p]; ok {
			line = n
			break
		}
	}
	return &Error{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)}
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// Source is where a config came from: embedded in each schema.
type Source struct {
	// File is the path the config was loaded from ("" when built in code).
	File string `yaml:"-"`
	// Lines records where each key was set; used to place errors.
	Lines Lines `yaml:"-"`
}

func (s *Source) source() *Source { return s }

// document is a config schema: decoded, then defaults, then validation.
type document interface {
	source() *Source
	SetDefaults()
	Validate() error
}

// parse decodes data into a new T, fills defaults and validates it.
func parse[T any, P interface {
	*T
	document
}](data []byte) (P, error) {
	doc := P(new(T))
	lines, err := Decode(data, doc)
	if lines == nil { // not YAML: nothing to validate
		return nil, err
	}
	// Keys that did decode are still validated, so one pass reports every
	// problem in the file.
	doc.source().Lines = lines
	doc.SetDefaults()
	if err := mergeErrors(err, doc.Validate()); err != nil {
		return nil, err
	}
	return doc, nil
}

// mergeErrors joins decoding and validation errors into one flat list,
// leaving out validation errors about a key that already failed to decode
// (its zero value is not what the file said).
func mergeErrors(decodeErr, validateErr error) error {
	errs := flatten(decodeErr)
	failed := map[string]bool{}
	for _, e := range errs {
		if ce, ok := e.(*Error); ok {
			failed[ce.Path] = true
		}
	}
	for _, e := range flatten(validateErr) {
		if ce, ok := e.(*Error); ok && failed[ce.Path] {
			continue
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

func flatten(err error) []error {
	if err == nil {
		return nil
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, flatten(e)...)
	}
	return out
}

// load reads file and parses it as a T.
func load[T any, P interface {
	*T
	document
}](file string) (P, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	doc, err := parse[T, P](data)
	if doc != nil {
		doc.source().File = file
	}
	return doc, err
}

// Decode parses YAML data strictly into v (a pointer to a struct): unknown
// keys, duplicate keys and values of the wrong type are errors naming the key
// path and line. Every problem found is returned, joined.
func Decode(data []byte, v any) (Lines, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, syntaxError(data, err)
	}
	d := &decoder{lines: Lines{}}
	if len(doc.Content) > 0 {
		d.value(doc.Content[0], "", reflect.ValueOf(v).Elem())
	}
	return d.lines, errors.Join(d.errs...)
}

type decoder struct {
	lines Lines
	errs  []error
}

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, &Error{Path: path, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
}

var scalarDecoderType = reflect.TypeFor[ScalarDecoder]()

func (d *decoder) value(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // "key:" with no value keeps the zero value (and its default)
	}
	if v.CanAddr() && v.Addr().Type().Implements(scalarDecoderType) {
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "want a single value, got %s", kindName(n))
			return
		}
		if err := v.Addr().Interface().(ScalarDecoder).DecodeScalar(n.Value); err != nil {
			d.fail(n, path, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.value(n, path, v.Elem())
	case reflect.Struct:
		d.structValue(n, path, v)
	case reflect.Map:
		d.mapValue(n, path, v)
	case reflect.Slice:
		d.sliceValue(n, path, v)
	default:
		d.scalar(n, path, v)
	}
}

func (d *decoder) structValue(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping of keys, got %s", kindName(n))
		return
	}
	fields := yamlFields(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		p := joinPath(path, k.Value)
		if seen[k.Value] {
			d.fail(k, p, "duplicate key")
			continue
		}
		seen[k.Value] = true
		idx, ok := fields[k.Value]
		if !ok {
			d.fail(k, p, "unknown key; want one of %s", strings.Join(sortedKeys(fields), ", "))
			continue
		}
		d.lines[p] = k.Line
		d.value(val, p, v.Field(idx))
	}
}

func (d *decoder) mapValue(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping of names, got %s", kindName(n))
		return
	}
	if v.Type().Key().Kind() != reflect.String {
		panic("config: map keys must be strings")
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		p := joinPath(path, k.Value)
		if _, dup := d.lines[p]; dup {
			d.fail(k, p, "duplicate key")
			continue
		}
		d.lines[p] = k.Line
		elem := reflect.New(v.Type().Elem()).Elem()
		d.value(val, p, elem)
		v.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), elem)
	}
}

func (d *decoder) sliceValue(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "want a list, got %s", kindName(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		p := fmt.Sprintf("%s[%d]", path, i)
		d.lines[p] = item.Line
		d.value(item, p, s.Index(i))
	}
	v.Set(s)
}

func (d *decoder) scalar(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "want a single value, got %s", kindName(n))
		return
	}
	s := n.Value
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, ok := parseBool(s)
		if !ok {
			d.fail(n, path, "want true or false, got %q", s)
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, v.Type().Bits())
		if err != nil {
			d.fail(n, path, "want a whole number, got %q", s)
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		u, err := strconv.ParseUint(strings.ReplaceAll(s, "_", ""), 0, v.Type().Bits())
		if err != nil {
			d.fail(n, path, "want a whole number from 0, got %q", s)
			return
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil {
			d.fail(n, path, "want a number, got %q", s)
			return
		}
		v.SetFloat(f)
	default:
		panic(fmt.Sprintf("config: cannot decode into %s", v.Type()))
	}
}

func parseBool(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "true", "yes", "on":
		return true, true
	case "false", "no", "off":
		return false, true
	}
	return false, false
}

func yamlFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		m[name] = i
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}
