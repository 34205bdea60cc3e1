// Package readme reads the examples of the repository's README.md, for the
// tests that run them so that they cannot drift.
package readme

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Text returns README.md of the module the test runs in (the first
// directory upwards from the working directory that has a go.mod).
func Text(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			b, err := os.ReadFile(filepath.Join(dir, "README.md"))
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Fence returns the body of the first fenced block of README.md after
// marker (without the fences and the info string). It fails the test when
// README has no such block.
func Fence(t testing.TB, marker string) string {
	t.Helper()
	block, err := fence(Text(t), marker)
	if err != nil {
		t.Fatal(err)
	}
	return block
}

func fence(text, marker string) (string, error) {
	_, rest, ok := strings.Cut(text, marker)
	if !ok {
		return "", fmt.Errorf("README.md has no %q", marker)
	}
	_, rest, ok = strings.Cut(rest, "```")
	if !ok {
		return "", fmt.Errorf("README.md has no fenced block after %q", marker)
	}
	_, rest, _ = strings.Cut(rest, "\n") // the fence's info string
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		return "", fmt.Errorf("README.md: the block after %q does not end", marker)
	}
	return block, nil
}
