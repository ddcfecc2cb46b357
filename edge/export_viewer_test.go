package edge

import "fmt"

// PlainHTML exposes the viewer's rendering of plain lines to the external tests.
var PlainHTML = plainHTML

// ViewRecord is one log record as the viewer reads it (fast path or decoder) and as
// the decoder alone reads it: kind and text.
func ViewRecord(line []byte) (kind, text string) {
	v := logRecord("f", line)
	return v.Kind, v.Text
}

func DecodeRecord(line []byte) (kind, text string) {
	v := decodeRecord("f", line)
	return v.Kind, v.Text
}

// CursorIDs is the event id of cursor c with file's count set to n, as a stream
// writes it (idAround) and as the whole cursor encodes (String).
func CursorIDs(c map[string]int, file string, n int) (around, whole string) {
	before, after := cursor(c).idAround(file)
	c[file] = n
	return before + fmt.Sprint(n) + after, cursor(c).String()
}

// PlainRecord is the viewer's reading of a record without the JSON decoder.
func PlainRecord(line []byte) (text string, ok bool) {
	_, text, ok = plainRecord(line)
	return text, ok
}
