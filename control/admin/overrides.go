package admin

import "net/http"

// Kinds of OverrideRequest.
const (
	OverrideWeight = "weight" // an endpoint's weight, 0–255
	OverrideDial   = "dial"   // a region's traffic dial, 0–100 percent
	OverrideReset  = "reset"  // every override cleared
)

// OverrideRequest is the body of POST /overrides: one change of a node's
// run-time overrides (`anyedge ctl weight`, `ctl dial`, `ctl reset`).
// Name is the endpoint ID (weight) or the region (dial); Value the new
// weight or dial. Reset takes neither.
type OverrideRequest struct {
	Kind  string `json:"kind"`
	Name  string `json:"name,omitempty"`
	Value *int   `json:"value,omitempty"`
}

// Overrider is implemented by nodes that take run-time overrides. It
// answers with the overrides now in force, or an error naming what is
// wrong (a *StatusError sets the HTTP status: 404 for a name the document
// does not have).
type Overrider interface {
	Override(req OverrideRequest) (any, error)
}

// overrideRoutes adds POST /overrides.
func (s *Server) overrideRoutes(mux *http.ServeMux, n Node) {
	mux.HandleFunc("POST /overrides", func(w http.ResponseWriter, r *http.Request) {
		o, ok := n.(Overrider)
		if !ok {
			http.Error(w, "this node takes no overrides", http.StatusNotImplemented)
			return
		}
		var req OverrideRequest
		if !readJSON(w, r, &req) {
			return
		}
		args := []any{"command", "override", "kind", req.Kind, "name", req.Name}
		if req.Value != nil {
			args = append(args, "value", *req.Value)
		}
		s.log.Info("admin command", append(args, "by", caller(r.Context()), "remote", r.RemoteAddr)...)
		out, err := o.Override(req)
		answer(w, out, err)
	})
}
