package main

import (
	"context"
	"errors"
)

// Placeholders until each command lands in its own file.

func cmdNode(context.Context, []string) error { return errors.New("not built yet") }
func cmdUp(context.Context, []string) error   { return errors.New("not built yet") }
