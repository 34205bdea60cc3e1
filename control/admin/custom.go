package admin

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
)

// TrafficRequest is the body of POST /custom-routing/allow and
// /custom-routing/deny: AWS Global Accelerator's AllowCustomRoutingTraffic
// and DenyCustomRoutingTraffic. All covers the whole subnet; otherwise each
// of Addresses, on each of Ports (every destination port when empty).
type TrafficRequest struct {
	Subnet    string   `json:"subnet"`
	All       bool     `json:"all,omitempty"`
	Addresses []string `json:"addresses,omitempty"`
	Ports     []int    `json:"ports,omitempty"`
}

// TrafficController is implemented by nodes that take custom routing
// allows and denies (regions, the authority), or that say where to send
// them (edges).
type TrafficController interface {
	// Traffic allows (allow true) or denies what req names and returns the
	// state now in force.
	Traffic(req TrafficRequest, allow bool) (any, error)
}

// PortMapQuery filters GET /port-map: by destination ("address:port"),
// listener port, accelerator or subnet; Expand lists every mapping of the
// matching subnets instead of their blocks.
type PortMapQuery struct {
	Destination string
	Port        int
	Accelerator string
	Subnet      string
	Expand      bool
}

// PortMapper answers port-map lookups.
type PortMapper interface {
	PortMap(q PortMapQuery) (any, error)
}

// StatusError is an error with the HTTP status the API answers it with.
type StatusError struct {
	Status int
	Err    error
}

func (e *StatusError) Error() string { return e.Err.Error() }
func (e *StatusError) Unwrap() error { return e.Err }

// maxRequest bounds a command's body.
const maxRequest = 1 << 20

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// readJSON decodes a command's JSON body into v, strictly; on an error
// it answers 400 and reports false.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

// answer writes out as JSON, or err with its status.
func answer(w http.ResponseWriter, out any, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, out)
}

func writeError(w http.ResponseWriter, err error) {
	code := http.StatusBadRequest
	var se *StatusError
	if errors.As(err, &se) {
		code = se.Status
	}
	http.Error(w, err.Error(), code)
}

// customRoutes adds the custom routing calls of n, if it has them.
func (s *Server) customRoutes(mux *http.ServeMux, n Node) {
	traffic := func(allow bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			tc, ok := n.(TrafficController)
			if !ok {
				http.Error(w, "this node serves no custom routing", http.StatusNotImplemented)
				return
			}
			var req TrafficRequest
			if !readJSON(w, r, &req) {
				return
			}
			s.log.Info("admin command", "command", map[bool]string{true: "allow", false: "deny"}[allow], "subnet", req.Subnet,
				"all", req.All, "addresses", req.Addresses, "ports", req.Ports, "by", caller(r.Context()), "remote", r.RemoteAddr)
			out, err := tc.Traffic(req, allow)
			answer(w, out, err)
		}
	}
	mux.HandleFunc("POST /custom-routing/allow", traffic(true))
	mux.HandleFunc("POST /custom-routing/deny", traffic(false))
	mux.HandleFunc("GET /port-map", func(w http.ResponseWriter, r *http.Request) {
		pm, ok := n.(PortMapper)
		if !ok {
			http.Error(w, "this node has no port map", http.StatusNotImplemented)
			return
		}
		q := r.URL.Query()
		pq := PortMapQuery{Destination: q.Get("destination"), Accelerator: q.Get("accelerator"), Subnet: q.Get("subnet"),
			Expand: q.Get("expand") == "1" || q.Get("expand") == "true"}
		if p := q.Get("port"); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				http.Error(w, "port: want 1–65535", http.StatusBadRequest)
				return
			}
			pq.Port = n
		}
		out, err := pm.PortMap(pq)
		answer(w, out, err)
	})
}
