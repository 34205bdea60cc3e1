package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// gobgpLogger adapts GoBGP's logger to slog and picks, from GoBGP's
// messages, the reasons why sessions failed (GoBGP's API does not expose
// them).
type gobgpLogger struct {
	log     *slog.Logger
	onError func(peer, reason string)

	// mu guards closed; it is held while logging so that nothing logs once
	// close returns.
	mu     sync.Mutex
	closed bool
}

var _ gobgplog.Logger = (*gobgpLogger)(nil)

func (l *gobgpLogger) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
}

func (l *gobgpLogger) emit(level slog.Level, msg string, fields gobgplog.Fields) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	peer, _ := fields["Key"].(string)
	if peer != "" && l.onError != nil {
		if reason := failureReason(level, msg, fields); reason != "" {
			l.onError(peer, reason)
		}
	}
	// GoBGP's own Info messages repeat what the speaker logs itself.
	if level == slog.LevelInfo {
		level = slog.LevelDebug
	}
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, 0, len(keys)+1)
	attrs = append(attrs, slog.String("source", "gobgp"))
	for _, k := range keys {
		switch k {
		case "Key":
			attrs = append(attrs, slog.String("peer", peer))
		case "Topic", gobgplog.FieldFacility:
		default:
			attrs = append(attrs, slog.Any(k, fields[k]))
		}
	}
	l.log.LogAttrs(ctx, level, msg, attrs...)
}

// failureReason turns a GoBGP message about a peer into the text of
// PeerStatus.LastError, or "" when the message reports no failure.
func failureReason(level slog.Level, msg string, fields gobgplog.Fields) string {
	switch msg {
	case "sent notification", "received notification":
		if me, ok := fields["Data"].(*bgp.MessageError); ok {
			return fmt.Sprintf("%s: %s (%s)", msg, bgp.NewNotificationErrorCode(me.TypeCode, me.SubTypeCode), me.Message)
		}
		code, _ := fields["Code"].(uint8)
		sub, _ := fields["Subcode"].(uint8)
		s := fmt.Sprintf("%s: %s", msg, bgp.NewNotificationErrorCode(code, sub))
		if r, _ := fields["Communicated-Reason"].(string); r != "" {
			s += fmt.Sprintf(" (%s)", r)
		}
		return s
	case "Peer Down":
		return resetReason("peer down", fmt.Sprint(fields["Reason"]))
	case "state changed":
		if fmt.Sprint(fields["new"]) != "BGP_FSM_IDLE" {
			return ""
		}
		return resetReason("session reset", fmt.Sprint(fields["reason"]))
	case "failed to connect":
		return fmt.Sprintf("connect: %v", fields["Error"])
	}
	if err, ok := fields["Error"]; ok && level >= slog.LevelWarn {
		return fmt.Sprintf("%s: %v", msg, err)
	}
	return ""
}

// resetReason describes why a session went down, or "" for a reason that is
// no failure or that was recorded in more detail already (notifications).
func resetReason(what, reason string) string {
	switch {
	case reason == "dying", reason == "admin-down", reason == "unknown", reason == "<nil>",
		reason == "new-connection", reason == "idle-hold-timer-expired",
		reason == "invalid-msg", // logged with the error before
		strings.HasPrefix(reason, "notification-"):
		return ""
	}
	return what + ": " + reason
}

func (l *gobgpLogger) Panic(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelError, msg, fields)
	panic("gobgp: " + msg)
}

// Fatal logs at error level; it does not exit, the process' owner decides.
func (l *gobgpLogger) Fatal(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelError, msg, fields)
}

func (l *gobgpLogger) Error(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelError, msg, fields)
}

func (l *gobgpLogger) Warn(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelWarn, msg, fields)
}

func (l *gobgpLogger) Info(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelInfo, msg, fields)
}

func (l *gobgpLogger) Debug(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelDebug, msg, fields)
}

// SetLevel is ignored: the slog handler decides.
func (l *gobgpLogger) SetLevel(gobgplog.LogLevel) {}

// GetLevel is always debug so that GoBGP reports connection failures, which
// it logs at debug level only; emit filters by the slog handler's level.
func (l *gobgpLogger) GetLevel() gobgplog.LogLevel { return gobgplog.DebugLevel }
