package auth

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// hashCost is the bcrypt cost HashLine uses (htpasswd -B's default).
const hashCost = 10

// HashLine returns a users-file line "username:$2a$10$…" for a `mqlb passwd`
// command. The username must not be empty, start with '#' (a comment) or
// contain line breaks; surrounding spaces are trimmed when the file is read,
// so they are refused too. bcrypt limits passwords to 72 bytes.
func HashLine(username, password string) (string, error) {
	return hashLineCost(username, password, hashCost)
}

func hashLineCost(username, password string, cost int) (string, error) {
	if err := checkUsername(username); err != nil {
		return "", err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", fmt.Errorf("auth: hash password: %w", err)
	}
	return username + ":" + string(hash), nil
}

func checkUsername(u string) error {
	switch {
	case u == "":
		return errors.New("auth: username is empty")
	case strings.HasPrefix(u, "#"):
		return errors.New("auth: username must not start with '#' (a comment in the users file)")
	case strings.ContainsAny(u, "\r\n"):
		return errors.New("auth: username must not contain a line break")
	case strings.TrimSpace(u) != u:
		return errors.New("auth: username must not start or end with spaces")
	}
	return nil
}

// loadUsers reads a users file: one "username:bcrypt-hash" per line, '#'
// comments and blank lines allowed. The hash is what follows the last ':'
// (bcrypt hashes contain none), so usernames may contain ':'. Errors name
// file:line and never quote the line, which may hold a hash or, by mistake,
// a password.
func loadUsers(path string) (map[string][]byte, error) {
	users := map[string][]byte{}
	if path == "" {
		return users, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, err := parseUserLine(line)
		if err != nil {
			return nil, fmt.Errorf("users file %s:%d: %w", path, n, err)
		}
		if _, dup := users[user]; dup {
			return nil, fmt.Errorf("users file %s:%d: duplicate user %q", path, n, user)
		}
		users[user] = hash
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	return users, nil
}

func parseUserLine(line string) (string, []byte, error) {
	i := strings.LastIndexByte(line, ':')
	if i < 0 {
		return "", nil, errors.New("want username:bcrypt-hash")
	}
	user, hash := line[:i], []byte(line[i+1:])
	if user == "" {
		return "", nil, errors.New("empty username")
	}
	// bcrypt's own errors quote bytes of the hash; keep them out.
	if _, err := bcrypt.Cost(hash); err != nil {
		return "", nil, fmt.Errorf("user %q: not a bcrypt hash (make one with htpasswd -B or mqlb passwd)", user)
	}
	return user, hash, nil
}

// dummyHashes holds, per bcrypt cost, the hash compared against for unknown
// users so that a refusal takes as long whether or not the username exists.
var dummyHashes sync.Map // int cost → []byte

// dummyHash returns the dummy hash of the given cost, made once.
func dummyHash(cost int) []byte {
	if h, ok := dummyHashes.Load(cost); ok {
		return h.([]byte)
	}
	h, err := bcrypt.GenerateFromPassword([]byte("mqlb-no-such-user"), cost)
	if err != nil {
		panic(err) // only fails for passwords over 72 bytes or a cost out of range
	}
	v, _ := dummyHashes.LoadOrStore(cost, h)
	return v.([]byte)
}

// usersCost is the highest bcrypt cost among the users' hashes (hashCost
// when there are none): an unknown user is compared at that cost, so a
// refusal takes as long as a known user's, neither shorter (a file hashed at
// cost 12) nor longer (one hashed at cost 4).
func usersCost(users map[string][]byte) int {
	c := 0
	for _, h := range users {
		if hc, err := bcrypt.Cost(h); err == nil && hc > c {
			c = hc
		}
	}
	if c == 0 {
		return hashCost
	}
	return c
}
