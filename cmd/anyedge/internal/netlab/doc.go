// Package netlab builds throwaway labs of named network namespaces joined by
// veth pairs, for tests that run whole anyedge processes, routers and
// clients as root. Namespace names carry the test process ID ("ae-PID-name"),
// veth devices are created directly inside the namespaces, so nothing is
// added to the caller's own namespace. Every namespace is deleted and every
// process started through the lab is killed by PID in the test's cleanup.
//
// The lab is Linux only.
package netlab
