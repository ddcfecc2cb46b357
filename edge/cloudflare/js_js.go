//go:build js && wasm

package cloudflare

import (
	"context"
	"fmt"
	"syscall/js"
)

var (
	jsObject      = js.Global().Get("Object")
	jsPromise     = js.Global().Get("Promise")
	jsUint8Array  = js.Global().Get("Uint8Array")
	jsArray       = js.Global().Get("Array")
	jsHeaders     = js.Global().Get("Headers")
	jsAbort       = js.Global().Get("AbortController")
	jsTransform   = js.Global().Get("TransformStream")
	jsFixedLength = js.Global().Get("FixedLengthStream") // workerd only
	jsArrayBuffer = js.Global().Get("ArrayBuffer")
)

// JSError is a JavaScript exception or promise rejection seen from Go.
type JSError struct {
	Name    string // the Error's name, or the value's type when it is not an Error
	Message string
}

func (e *JSError) Error() string { return e.Name + ": " + e.Message }

// jsErr converts a thrown or rejected JavaScript value.
func jsErr(v js.Value) error {
	if v.Type() == js.TypeObject && v.Get("message").Type() == js.TypeString {
		name := "Error"
		if n := v.Get("name"); n.Type() == js.TypeString {
			name = n.String()
		}
		return &JSError{Name: name, Message: v.Get("message").String()}
	}
	s := v.Type().String()
	if v.Type() != js.TypeUndefined && v.Type() != js.TypeNull {
		s = js.Global().Call("String", v).String()
	}
	return &JSError{Name: v.Type().String(), Message: s}
}

// Await waits for a promise (or any value: a non-promise settles at once) and
// returns its value, or a *JSError for a rejection, or ctx's error once ctx ends.
//
// It must run on a goroutine of its own, never directly inside a js.FuncOf callback
// (that would block the JavaScript event loop forever). Both callbacks are released
// when the promise settles, whichever of them fires; an await abandoned through ctx
// releases them when the promise settles later.
func Await(ctx context.Context, p js.Value) (js.Value, error) {
	type result struct {
		v   js.Value
		err error
	}
	ch := make(chan result, 1)
	var onValue, onError js.Func
	release := func() {
		onValue.Release()
		onError.Release()
	}
	onValue = js.FuncOf(func(_ js.Value, args []js.Value) any {
		release()
		ch <- result{v: arg(args, 0)}
		return nil
	})
	onError = js.FuncOf(func(_ js.Value, args []js.Value) any {
		release()
		ch <- result{err: jsErr(arg(args, 0))}
		return nil
	})
	jsPromise.Call("resolve", p).Call("then", onValue, onError)
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return js.Undefined(), ctx.Err()
	}
}

func arg(args []js.Value, i int) js.Value {
	if i < len(args) {
		return args[i]
	}
	return js.Undefined()
}

// try runs f and turns a JavaScript exception thrown by a call inside it into an error.
func try(f func()) (err error) {
	defer func() {
		if v := recover(); v != nil {
			if je, ok := v.(js.Error); ok {
				err = jsErr(je.Value)
				return
			}
			panic(v)
		}
	}()
	f()
	return nil
}

// bytesToJS copies b into a new Uint8Array.
func bytesToJS(b []byte) js.Value {
	u := jsUint8Array.New(len(b))
	js.CopyBytesToJS(u, b)
	return u
}

// bytesFromJS copies a Uint8Array, an ArrayBuffer or a string into Go.
func bytesFromJS(v js.Value) []byte {
	switch {
	case v.Type() == js.TypeString:
		return []byte(v.String())
	case v.InstanceOf(jsArrayBuffer):
		v = jsUint8Array.New(v)
	case !v.InstanceOf(jsUint8Array):
		return nil
	}
	b := make([]byte, v.Get("byteLength").Int())
	js.CopyBytesToGo(b, v)
	return b
}

// settle calls resolve with the value f returns, or reject with an Error for its
// error or panic. It is how every entry point from JavaScript ends.
func settle(resolve, reject js.Value, f func() (any, error)) {
	var v any
	err := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v", p)
			}
		}()
		v, err = f()
		return err
	}()
	if err != nil {
		reject.Invoke(js.Global().Get("Error").New(err.Error()))
		return
	}
	resolve.Invoke(v)
}
