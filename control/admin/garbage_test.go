package admin

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestAdminGarbage: random bytes, an oversized header and an oversized
// body each get an error answer (or a closed connection), never a hang or
// a crash, and the API keeps answering.
func TestAdminGarbage(t *testing.T) {
	addr := serve(t, &fakeNode{ready: true}, nil)
	raw := func(t *testing.T, req []byte) string {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() { _, _ = c.Write(req) }()
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line
	}
	t.Run("random bytes", func(t *testing.T) {
		b := make([]byte, 4096)
		_, _ = rand.Read(b)
		b[0] = 0x16 // not a method: a TLS record, say
		require.Contains(t, raw(t, append(b, "\r\n\r\n"...)), "400")
	})
	t.Run("oversized header", func(t *testing.T) {
		req := "GET /status HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 2*maxHeaderBytes) + "\r\n\r\n"
		require.Contains(t, raw(t, []byte(req)), "431")
	})
	t.Run("oversized body", func(t *testing.T) {
		body := strings.Repeat("x", 4*maxRequest)
		resp, err := http.Post("http://"+addr+"/undrain", "application/octet-stream", strings.NewReader(body))
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		require.Less(t, resp.StatusCode, 500)
	})
	t.Run("still serving", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		out, err := Call(ctx, addr, "ready")
		require.NoError(t, err, fmt.Sprint(out))
	})
}
