package admin

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/anyedge/anyedge/backbone/pki"
)

// callerKey carries the caller of a request in its context.
type callerKey struct{}

// local marks every request on the loopback address as the local
// operator's: whoever can reach loopback on the node is trusted, as before
// remote access existed.
func local(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, "local")))
	})
}

// caller names who made the request, for the log.
func caller(ctx context.Context) string {
	s, _ := ctx.Value(callerKey{}).(string)
	return s
}

// readOnly reports whether a request only reads.
func readOnly(r *http.Request) bool {
	return r.Method == http.MethodGet || r.Method == http.MethodHead
}

// operatorsOnly admits a request on the remote address only with a valid
// operator certificate of the fleet, and a state-changing one only from an
// operator with the admin role. A request without a valid certificate gets
// 401; a valid certificate that is no operator's (a node's), or a read-only
// operator changing state, gets 403. Every refusal is counted and logged
// (rate-limited).
func (s *Server) operatorsOnly(store *pki.Store, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			s.refuse(w, r, http.StatusUnauthorized, "no_tls", "", errors.New("not a TLS connection"))
			return
		}
		op, err := store.VerifyOperator(*r.TLS)
		if err != nil {
			code := http.StatusUnauthorized
			if errors.Is(err, pki.ErrNotOperator) {
				code = http.StatusForbidden
			}
			s.refuse(w, r, code, pki.RejectReason(err), "", err)
			return
		}
		if !readOnly(r) && op.Role != pki.RoleAdmin {
			s.refuse(w, r, http.StatusForbidden, "read_only", op.Name,
				errors.New("operator has the read role; this call needs admin"))
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, "operator "+op.Name)))
	})
}

// refuse answers code with the reason and a hint, and records the refusal.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code int, reason, operator string, err error) {
	s.refused.record(r, reason, operator, err)
	hint := "present an operator certificate of this fleet's CA (anyedge certs issue --operator)"
	switch reason {
	case "not_operator":
		hint = "a node's certificate is not an operator certificate"
	case "read_only":
		hint = "this call needs an operator certificate with the admin role"
	}
	http.Error(w, reason+": "+hint, code)
}

// refusalLogEvery is the least time between two refusal log lines; the
// ones in between are counted and the count goes with the next line.
const refusalLogEvery = time.Second

// refusals counts and logs refused remote requests.
type refusals struct {
	log        *slog.Logger
	count      *prometheus.CounterVec
	lastLog    atomic.Int64 // unix nanoseconds
	suppressed atomic.Int64
	now        func() time.Time // a seam for tests
}

func newRefusals(log *slog.Logger, reg *prometheus.Registry) *refusals {
	f := &refusals{log: log, count: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "anyedge", Subsystem: "admin", Name: "requests_refused_total",
		Help: "Requests to the remote admin API refused, by reason.",
	}, []string{"reason"}), now: time.Now}
	if reg != nil {
		reg.MustRegister(f.count)
	}
	return f
}

func (f *refusals) record(r *http.Request, reason, operator string, err error) {
	f.count.WithLabelValues(reason).Inc()
	now := f.now().UnixNano()
	last := f.lastLog.Load()
	if now-last < int64(refusalLogEvery) || !f.lastLog.CompareAndSwap(last, now) {
		f.suppressed.Add(1)
		return
	}
	f.log.Warn("admin request refused", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path,
		"reason", reason, "operator", operator, "err", err, "suppressed", f.suppressed.Swap(0))
}
