package readme

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFence(t *testing.T) {
	text := "# x\n\nmarker here:\n\n```yaml\na: 1\n```\n\n```sh\nno\n```\n"
	got, err := fence(text, "marker here:")
	require.NoError(t, err)
	require.Equal(t, "a: 1\n", got)
	_, err = fence(text, "absent")
	require.EqualError(t, err, `README.md has no "absent"`)
	_, err = fence("marker\n```sh\nopen", "marker")
	require.EqualError(t, err, `README.md: the block after "marker" does not end`)
	_, err = fence("marker and nothing", "marker")
	require.ErrorContains(t, err, "no fenced block")
}

// TestText finds the module's README from a package directory.
func TestText(t *testing.T) {
	require.True(t, strings.HasPrefix(Text(t), "# anyedge"))
}
