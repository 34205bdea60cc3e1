// Package bench holds the reproducible benchmarks of BENCHMARKS.md: run.sh
// drives real processes (anyedge, iperf3, HAProxy and the helpers under
// bench/cmd), and this package's Go benchmarks run an edge and a region in
// one process so that `go test -bench` can take CPU and heap profiles of the
// data path:
//
//	go test ./bench -run '^$' -bench Bulk -benchtime 2000x -cpuprofile cpu.out
//	go tool pprof -top bench.test cpu.out
package bench
