package dsl

import (
	"encoding/json"
	"strconv"
	"strings"
)

// Typed reads of the run's configuration (CONFIG_KV), contract config.get / getJSON:
// read-only and never failing — an absent key, an unreadable store or a value of the
// wrong shape gives the default, and the last two are logged. Keys must be inside the
// run's Spec.Needs.Config namespaces. Configuration can change between attempts: read
// it inside a step when a replay must see the same value.

func configGet(c *Ctx, key string) (string, bool) {
	if c.Config == nil {
		return "", false
	}
	vals, err := c.Config.Get(c, []string{key})
	if err != nil {
		c.logger().Warn("config read failed; using the default", "key", key, "err", err)
		return "", false
	}
	v, ok := vals[key]
	return v, ok
}

// ConfigString is the value of key, or def.
func ConfigString(c *Ctx, key, def string) string {
	if v, ok := configGet(c, key); ok {
		return v
	}
	return def
}

// ConfigInt is key's value as an integer, or def.
func ConfigInt(c *Ctx, key string, def int) int {
	v, ok := configGet(c, key)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		c.logger().Warn("config value is not an integer; using the default", "key", key)
		return def
	}
	return n
}

// ConfigBool is key's value as a boolean (true/false/1/0), or def.
func ConfigBool(c *Ctx, key string, def bool) bool {
	v, ok := configGet(c, key)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		c.logger().Warn("config value is not a boolean; using the default", "key", key)
		return def
	}
	return b
}

// ConfigJSON decodes key's JSON value into a T, or returns def.
func ConfigJSON[T any](c *Ctx, key string, def T) T {
	v, ok := configGet(c, key)
	if !ok {
		return def
	}
	var out T
	if err := json.Unmarshal([]byte(v), &out); err != nil {
		c.logger().Warn("config value does not decode; using the default", "key", key, "err", err)
		return def
	}
	return out
}

// ConfigList is key's value as a list: a JSON array of strings, or comma/space
// separated words; def when absent.
func ConfigList(c *Ctx, key string, def []string) []string {
	v, ok := configGet(c, key)
	if !ok {
		return def
	}
	var list []string
	if json.Unmarshal([]byte(v), &list) == nil {
		return list
	}
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' })
}
