// Package kv is the edge's KV port over one Workers KV binding (Namespace, js/wasm
// only): CONFIG_KV and IDEMPOTENCY_KV, the original's namespaces (specs/config.md).
// The edge's own state stays in D1, which reads its writes back at once.
package kv
