package gateway_test

import (
	"bufio"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/wire"
)

type msgReader struct{ r *bufio.Reader }

func newMsgReader(r io.Reader) *msgReader { return &msgReader{r: bufio.NewReader(r)} }

func (m *msgReader) next(t *testing.T) (wire.MsgType, []byte) {
	t.Helper()
	typ, body, err := wire.ReadMsg(m.r)
	require.NoError(t, err)
	return typ, body
}
