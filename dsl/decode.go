package dsl

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// FieldError is an input that failed validation. Field is a path into the inputs
// object ("command", "timeoutSec", "env.FOO", "secrets[1]"); "" means the inputs as a
// whole. The edge puts it in its 400 body (prefixing "inputs." if it wants the path
// from the request's root).
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// decodeInputs decodes raw into I strictly: the JSON is first checked against I's shape
// (so each problem names its field), then unmarshalled, defaulted and validated.
func decodeInputs[I any](raw json.RawMessage) (I, error) {
	var in I
	err := decodeInto(raw, &in, reflect.TypeFor[I]())
	return in, err
}

// decodeInto is decodeInputs without generics (one copy in the binary for every run's
// inputs type); in points at a value of type t.
func decodeInto(raw json.RawMessage, in any, t reflect.Type) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		raw = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return &FieldError{Message: "inputs are not valid JSON: " + err.Error()}
	}
	if dec.More() {
		return &FieldError{Message: "inputs have data after the JSON value"}
	}
	if fe := check(t, tree, ""); fe != nil {
		return fe
	}
	dec = json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(in); err != nil {
		return unmarshalFieldError(err)
	}
	if d, ok := in.(interface{ Default() }); ok {
		d.Default()
	}
	if v, ok := in.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				return fe
			}
			return &FieldError{Message: err.Error()}
		}
	}
	return nil
}

// unmarshalFieldError names the field of an error check let through (one a custom
// UnmarshalJSON raised).
func unmarshalFieldError(err error) *FieldError {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return &FieldError{Field: te.Field, Message: "expected " + jsonKind(te.Type) + ", got " + te.Value}
	}
	return &FieldError{Message: err.Error()}
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// check walks a decoded JSON value (map[string]any, []any, string, json.Number, bool,
// nil) against a Go type and returns the first mismatch with its path: unknown keys
// first, then each field in declaration order (wrong type, or missing when required).
func check(t reflect.Type, v any, path string) *FieldError {
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		// The type decides for itself (time.Time, json.RawMessage, …): ask it, here,
		// so its error gets this path.
		b, err := json.Marshal(v)
		if err == nil {
			err = json.Unmarshal(b, reflect.New(t).Interface())
		}
		if err != nil {
			return &FieldError{Field: path, Message: err.Error()}
		}
		return nil
	}
	if t.Kind() == reflect.Pointer {
		if v == nil {
			return nil
		}
		return check(t.Elem(), v, path)
	}
	if v == nil {
		return nil // null leaves the zero value; required fields are checked by their struct
	}
	mismatch := func() *FieldError {
		return &FieldError{Field: path, Message: "expected " + jsonKind(t) + ", got " + kindOf(v)}
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		if _, ok := v.(string); !ok {
			return mismatch()
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Interface:
		return nil
	case reflect.String:
		if _, ok := v.(string); !ok {
			return mismatch()
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return mismatch()
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			return mismatch()
		}
		if _, err := strconv.ParseInt(n.String(), 10, t.Bits()); err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return &FieldError{Field: path, Message: "out of range: " + n.String()}
			}
			return &FieldError{Field: path, Message: "expected an integer, got " + n.String()}
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		if !ok {
			return mismatch()
		}
		if _, err := strconv.ParseUint(n.String(), 10, t.Bits()); err != nil {
			return &FieldError{Field: path, Message: "expected a non-negative integer in range, got " + n.String()}
		}
	case reflect.Float32, reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			return mismatch()
		}
		if _, err := strconv.ParseFloat(n.String(), t.Bits()); err != nil {
			return &FieldError{Field: path, Message: "out of range: " + n.String()}
		}
	case reflect.Slice, reflect.Array:
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
			if _, ok := v.(string); !ok { // []byte is base64 text in JSON
				return mismatch()
			}
			return nil
		}
		arr, ok := v.([]any)
		if !ok {
			return mismatch()
		}
		if t.Kind() == reflect.Array && len(arr) > t.Len() {
			return &FieldError{Field: path, Message: fmt.Sprintf("at most %d items, got %d", t.Len(), len(arr))}
		}
		for i, e := range arr {
			if fe := check(t.Elem(), e, fmt.Sprintf("%s[%d]", path, i)); fe != nil {
				return fe
			}
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			return mismatch()
		}
		if t.Key().Kind() != reflect.String {
			return nil // integer or text keys: left to encoding/json
		}
		for _, k := range sortedKeys(obj) {
			if fe := check(t.Elem(), obj[k], join(path, k)); fe != nil {
				return fe
			}
		}
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return mismatch()
		}
		fields := jsonFields(t)
		known := make(map[string]bool, len(fields))
		for _, f := range fields {
			known[f.name] = true
		}
		for _, k := range sortedKeys(obj) {
			if !known[k] {
				return &FieldError{Field: join(path, k), Message: "unknown field"}
			}
		}
		for _, f := range fields {
			val, present := obj[f.name]
			if !present || val == nil {
				if f.required && f.typ.Kind() != reflect.Pointer {
					return &FieldError{Field: join(path, f.name), Message: "is required"}
				}
				continue
			}
			if fe := check(f.typ, val, join(path, f.name)); fe != nil {
				return fe
			}
		}
	default:
		return &FieldError{Field: path, Message: "cannot be decoded into " + t.String()}
	}
	return nil
}

type jsonField struct {
	name     string
	typ      reflect.Type
	required bool
}

// jsonFields lists the JSON fields of a struct type as encoding/json sees them, with
// embedded structs flattened.
func jsonFields(t reflect.Type) []jsonField {
	var out []jsonField
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if sf.Anonymous && name == "" {
			ft := sf.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				out = append(out, jsonFields(ft)...)
				continue
			}
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		optional := slices.Contains(strings.Split(opts, ","), "omitempty") || slices.Contains(strings.Split(opts, ","), "omitzero")
		out = append(out, jsonField{name: name, typ: sf.Type, required: !optional})
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func kindOf(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return "null"
}

func jsonKind(t reflect.Type) string {
	if t == nil {
		return "a value"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "a " + t.String()
}
