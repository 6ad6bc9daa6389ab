//go:build !linux

package procsched

import "errors"

// Set is Linux-only; elsewhere it sets nothing.
func Set(p Policy) (Result, error) {
	if p == Normal {
		return Result{}, nil
	}
	return Result{}, errors.New("scheduling policies are set on Linux only")
}

// Of is Linux-only.
func Of(tid int) (string, error) { return "", errors.New("scheduling policies are read on Linux only") }
