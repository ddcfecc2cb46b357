//go:build !js

package workertest

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Func is one function of a wasm module: its name (from the name section, as the
// Go linker writes it: "net_http.__Transport_.RoundTrip" for
// net/http.(*Transport).RoundTrip) and its code.
type Func struct {
	Name string
	Code []byte
}

// WasmFuncs lists the functions defined in a wasm binary with their code; it also
// returns the size of the data section. It reads the standard sections only.
func WasmFuncs(path string) (funcs []Func, dataBytes int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	if len(b) < 8 || !bytes.Equal(b[:4], []byte("\x00asm")) {
		return nil, 0, fmt.Errorf("%s: not a wasm module", path)
	}
	p := b[8:]
	uleb := func(q []byte) (uint64, int, error) {
		v, n := binary.Uvarint(q)
		if n <= 0 {
			return 0, 0, errors.New("bad LEB128")
		}
		return v, n, nil
	}
	var imported int
	var bodies [][]byte
	names := map[int]string{}
	for len(p) > 0 {
		id := p[0]
		size, n, err := uleb(p[1:])
		if err != nil || 1+n+int(size) > len(p) {
			return nil, 0, fmt.Errorf("%s: truncated section", path)
		}
		sec := p[1+n : 1+n+int(size)]
		p = p[1+n+int(size):]
		switch id {
		case 2: // imports: count the imported functions, which come first in the index space
			cnt, k, _ := uleb(sec)
			q := sec[k:]
			for range cnt {
				for range 2 { // module and field names
					l, k, _ := uleb(q)
					q = q[k+int(l):]
				}
				kind := q[0]
				q = q[1:]
				switch kind {
				case 0: // function: type index
					_, k, _ := uleb(q)
					q = q[k:]
					imported++
				case 1: // table: reftype, limits
					q = q[1:]
					fallthrough
				case 2: // memory: limits
					flags := q[0]
					_, k, _ := uleb(q[1:])
					q = q[1+k:]
					if flags&1 != 0 {
						_, k, _ := uleb(q)
						q = q[k:]
					}
				case 3: // global: valtype, mutability
					q = q[2:]
				}
			}
		case 10: // code
			cnt, k, _ := uleb(sec)
			q := sec[k:]
			for range cnt {
				l, k, _ := uleb(q)
				bodies = append(bodies, q[k:k+int(l)])
				q = q[k+int(l):]
			}
		case 11:
			dataBytes += len(sec)
		case 0: // custom: "name", subsection 1 = function names
			nl, k, _ := uleb(sec)
			if string(sec[k:k+int(nl)]) != "name" {
				continue
			}
			q := sec[k+int(nl):]
			for len(q) > 0 {
				sid := q[0]
				ss, k, _ := uleb(q[1:])
				sub := q[1+k : 1+k+int(ss)]
				q = q[1+k+int(ss):]
				if sid != 1 {
					continue
				}
				cnt, k, _ := uleb(sub)
				r := sub[k:]
				for range cnt {
					idx, k, _ := uleb(r)
					r = r[k:]
					l, k, _ := uleb(r)
					names[int(idx)] = string(r[k : k+int(l)])
					r = r[k+int(l):]
				}
			}
		}
	}
	for i, c := range bodies {
		funcs = append(funcs, Func{Name: names[imported+i], Code: c})
	}
	return funcs, dataBytes, nil
}

// Package is the package a linker function name belongs to ("net_http",
// "github.com_flare-dispatch_flare-dispatch_edge").
func Package(name string) string {
	rest, pre := name, ""
	for _, d := range []string{"github.com_", "golang.org_", "vendor_golang.org_"} {
		if strings.HasPrefix(rest, d) {
			pre, rest = d, rest[len(d):]
		}
	}
	if strings.HasPrefix(rest, "type_.") {
		return "type_"
	}
	if i := strings.Index(rest, "."); i >= 0 {
		rest = rest[:i]
	}
	return pre + rest
}

// PackageSize is the code of one package: raw bytes and gzip -9 of its functions alone.
type PackageSize struct {
	Package   string
	Code, Gz  int
	Functions int
}

// PackageSizes groups funcs by package, largest gzip first.
func PackageSizes(funcs []Func) []PackageSize {
	by := map[string]*PackageSize{}
	bufs := map[string]*bytes.Buffer{}
	for _, f := range funcs {
		pkg := Package(f.Name)
		if by[pkg] == nil {
			by[pkg], bufs[pkg] = &PackageSize{Package: pkg}, &bytes.Buffer{}
		}
		by[pkg].Code += len(f.Code)
		by[pkg].Functions++
		bufs[pkg].Write(f.Code)
	}
	var out []PackageSize
	for pkg, s := range by {
		var g bytes.Buffer
		w, _ := gzip.NewWriterLevel(&g, gzip.BestCompression)
		w.Write(bufs[pkg].Bytes())
		w.Close()
		s.Gz = g.Len()
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Gz != out[j].Gz {
			return out[i].Gz > out[j].Gz
		}
		return out[i].Code > out[j].Code
	})
	return out
}
