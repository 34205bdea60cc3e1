package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestTestdata loads every document of testdata/: one whose first lines
// say "# want: PROBLEM" must be refused with exactly those problems (as
// rendered, line and column included); any other must load. control/node
// builds every node of the ones that load, so each file here is also a
// case of "what validate accepts, nodes start with".
func TestTestdata(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, name := range files {
		t.Run(filepath.Base(name), func(t *testing.T) {
			b, err := os.ReadFile(name)
			require.NoError(t, err)
			var want []string
			for line := range strings.Lines(string(b)) {
				w, ok := strings.CutPrefix(line, "# want: ")
				if !ok {
					break
				}
				want = append(want, strings.TrimSuffix(w, "\n"))
			}
			_, err = Load(b, noEnv)
			if len(want) == 0 {
				require.NoError(t, err)
				return
			}
			var ve *ValidationError
			require.ErrorAs(t, err, &ve)
			require.Equal(t, want, rendered(ve.Problems))
		})
	}
}
