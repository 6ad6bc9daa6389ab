package auth

import (
	"context"
	"errors"
)

// fileBackend is the bcrypt users file: an unknown user is ignored (the
// next backend is asked), a wrong or missing password denied.
type fileBackend struct {
	users map[string][]byte
	dummy []byte // compared against for unknown users, at the users' cost
}

func newFileBackend(path string) (*fileBackend, error) {
	users, err := loadUsers(path)
	if err != nil {
		return nil, err
	}
	return &fileBackend{users: users, dummy: dummyHash(usersCost(users))}, nil
}

func (f *fileBackend) Authenticate(_ context.Context, r Request) (Decision, error) {
	hash, known := f.users[r.Username]
	if !known {
		tryCompare(f.dummy, []byte(r.Password)) // same time as a known user, when a bcrypt slot is free
		return Decision{Result: Ignore}, nil
	}
	res, err := checkHash(hash, r.Password)
	return Decision{Result: res}, err
}

// checkHash compares a bcrypt hash within the cap on concurrent bcrypt
// work (throttle.go); an empty password never matches, nor does one longer
// than maxBcryptPassword. A comparison that found no free slot in time is
// errBusy: the client is refused as "server busy", not as a wrong password.
func checkHash(hash []byte, password string) (Result, error) {
	if password == "" {
		return Deny, nil
	}
	// A password too long to verify is compared all the same, so that it
	// is refused in a wrong password's time.
	switch err := comparePassword(hash, []byte(password)); {
	case errors.Is(err, errBusy):
		return Deny, err
	case err != nil, len(password) > maxBcryptPassword:
		return Deny, nil
	}
	return Allow, nil
}

// maxBcryptPassword is the most bcrypt reads of a password: it ignores
// the bytes after the 72nd, so a user whose password is 72 bytes long
// also logged in with those bytes followed by anything. A longer password
// cannot be verified exactly and never matches (bcrypt.GenerateFromPassword,
// hence HashLine, refuses to hash one).
const maxBcryptPassword = 72
