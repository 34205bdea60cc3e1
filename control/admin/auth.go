package admin

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/internal/ratelog"
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

// readOnly reports whether a request only reads, and may be made by an
// operator of any role. Profiles are reads, but a CPU profile or trace
// keeps the node busy for as long as the caller asks and a heap or
// goroutine profile shows the node's internals: the admin role's.
func readOnly(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && !profiling(r)
}

// profiling reports whether r asks for a runtime profile.
func profiling(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, ProfilePath)
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

// refusals counts refused remote requests and logs them, one line per
// reason every ratelog.Every at most (the next line says how many were left
// out), so that a scanner cannot flood the log.
type refusals struct {
	log   *ratelog.Logger
	count *prometheus.CounterVec
}

func newRefusals(log *slog.Logger, reg *prometheus.Registry) *refusals {
	f := &refusals{log: ratelog.New(log, ratelog.Every), count: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "anyedge", Subsystem: "admin", Name: "requests_refused_total",
		Help: "Requests to the remote admin API refused, by reason.",
	}, []string{"reason"})}
	if reg != nil {
		reg.MustRegister(f.count)
	}
	return f
}

func (f *refusals) record(r *http.Request, reason, operator string, err error) {
	f.count.WithLabelValues(reason).Inc()
	f.log.Log(slog.LevelWarn, "admin request refused "+reason, "admin request refused", "remote", r.RemoteAddr,
		"method", r.Method, "path", r.URL.Path, "reason", reason, "operator", operator, "err", err)
}
