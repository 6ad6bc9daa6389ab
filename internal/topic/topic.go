// Package topic is MQTT's topic vocabulary, shared by the config checks,
// the node's authorization and the node's mesh: validating a topic filter
// and splitting a shared subscription's filter. One implementation, so
// that a filter the config accepts is the filter the node applies.
package topic

import (
	"errors"
	"strings"
)

// ValidFilter checks a topic filter: not empty [MQTT-4.7.3-1], '#' only as
// the whole last level [MQTT-4.7.1-2], '+' only as a whole level
// [MQTT-4.7.1-3].
func ValidFilter(f string) error {
	if f == "" {
		return errors.New("empty topic filter")
	}
	for {
		level, rest, more := strings.Cut(f, "/")
		if strings.Contains(level, "#") && (level != "#" || more) {
			return errors.New("'#' must be a whole level and the last one")
		}
		if strings.Contains(level, "+") && level != "+" {
			return errors.New("'+' must be a whole level")
		}
		if !more {
			return nil
		}
		f = rest
	}
}

// ValidSubscription checks a filter of a SUBSCRIBE or UNSUBSCRIBE: a valid
// filter (ValidFilter), and when its first level is "$share" (in any case,
// as SplitShared) one of the form $share/{name}/{filter}, with a name of at
// least one character and no wildcard [MQTT-4.8.2-1] [MQTT-4.8.2-2] (v5)
// and a filter that is not empty.
func ValidSubscription(f string) error {
	if err := ValidFilter(f); err != nil {
		return err
	}
	if !ShareName(f) {
		return nil
	}
	group, _, ok := SplitShared(f)
	switch {
	case !ok:
		return errors.New("a shared subscription is $share/{name}/{filter}, name and filter not empty")
	case strings.ContainsAny(group, "+#"):
		return errors.New("'+' or '#' in a share name")
	}
	return nil
}

// SplitShared splits a shared subscription's filter "$share/{group}/{filter}"
// [MQTT-4.8.2] into its group and inner filter. "$share" is matched in any
// case, as mochi-mqtt accepts it. For any other filter, or a shared one
// without a group or inner filter, it returns ("", f, false).
func SplitShared(f string) (group, inner string, ok bool) {
	const prefix = "$share/"
	if len(f) < len(prefix) || !strings.EqualFold(f[:len(prefix)], prefix) {
		return "", f, false
	}
	group, inner, ok = strings.Cut(f[len(prefix):], "/")
	if !ok || group == "" || inner == "" {
		return "", f, false
	}
	return group, inner, true
}

// ShareName reports whether a topic name's first level is "$share" (in any
// case, as SplitShared takes it): the syntax of shared subscription filters
// [MQTT-4.8.2-1], not a name to publish to.
func ShareName(name string) bool {
	first, _, _ := strings.Cut(name, "/")
	return strings.EqualFold(first, "$share")
}

// ValidShareName checks a shared subscription's group name: at least one
// character [MQTT-4.8.2-1], and no '/', '+' or '#' [MQTT-4.8.2-2].
func ValidShareName(g string) error {
	if g == "" {
		return errors.New("a share name has at least one character")
	}
	if strings.ContainsAny(g, "/+#") {
		return errors.New("a share name must not contain '/', '+' or '#'")
	}
	return nil
}

// Match reports whether the topic name matches the topic filter: '+' one
// level, '#' the rest (and "a/#" matches "a"), no wildcard first level for a
// name starting with '$' [MQTT-4.7.2-1]; a shared subscription matches by
// its inner filter.
func Match(filter, name string) bool {
	if _, inner, ok := SplitShared(filter); ok {
		filter = inner
	}
	if strings.HasPrefix(name, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			return true
		}
		t, trest, tmore := strings.Cut(name, "/")
		if f != "+" && f != t {
			return false
		}
		if !fmore || !tmore {
			return fmore == tmore || (!tmore && frest == "#")
		}
		filter, name = frest, trest
	}
}
