package testutil

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

// DuplicateKeys returns the keys that appear more than once in one object
// of the JSON text line (nested objects checked on their own), as
// "path.key"; encoding/json keeps the last of duplicates without a word.
func DuplicateKeys(line []byte) ([]string, error) {
	d := json.NewDecoder(bytes.NewReader(line))
	var dups []string
	var walk func(path string) error
	walk = func(path string) error {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for d.More() {
				k, err := d.Token()
				if err != nil {
					return err
				}
				key := fmt.Sprint(k)
				if seen[key] {
					dups = append(dups, path+key)
				}
				seen[key] = true
				if err := walk(path + key + "."); err != nil {
					return err
				}
			}
			_, err = d.Token() // }
			return err
		case json.Delim('['):
			for d.More() {
				if err := walk(path + "[]."); err != nil {
					return err
				}
			}
			_, err = d.Token() // ]
			return err
		}
		return nil
	}
	err := walk("")
	return dups, err
}

// NoDuplicateKeys fails the test for every line of a JSON log that is not
// JSON or has a key twice.
func NoDuplicateKeys(t testing.TB, log string) {
	t.Helper()
	for _, line := range bytes.Split(bytes.TrimSpace([]byte(log)), []byte("\n")) {
		dups, err := DuplicateKeys(line)
		if err != nil {
			t.Errorf("not JSON: %v: %s", err, line)
		}
		if len(dups) > 0 {
			t.Errorf("duplicate keys %v in %s", dups, line)
		}
	}
}
