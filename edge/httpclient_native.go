//go:build !js

package edge

import "net/http"

func init() { defaultHTTPClient = http.DefaultClient }
