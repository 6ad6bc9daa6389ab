package auth

import "context"

// fileBackend is the bcrypt users file: an unknown user is ignored (the
// next backend is asked), a wrong or missing password denied.
type fileBackend struct {
	users map[string][]byte
}

func newFileBackend(path string) (*fileBackend, error) {
	users, err := loadUsers(path)
	if err != nil {
		return nil, err
	}
	return &fileBackend{users: users}, nil
}

func (f *fileBackend) Authenticate(_ context.Context, r Request) (Decision, error) {
	hash, known := f.users[r.Username]
	if !known {
		tryCompare(dummyHash(), []byte(r.Password)) // same time as a known user, when a bcrypt slot is free
		return Decision{Result: Ignore}, nil
	}
	return Decision{Result: checkHash(hash, r.Password)}, nil
}

// checkHash compares a bcrypt hash within the cap on concurrent bcrypt
// work (throttle.go); an empty password never matches, and neither does one
// that found no free slot in time.
func checkHash(hash []byte, password string) Result {
	if password == "" || comparePassword(hash, []byte(password)) != nil {
		return Deny
	}
	return Allow
}
