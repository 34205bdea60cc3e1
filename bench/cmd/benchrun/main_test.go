package main

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, median(tt.in), "median(%v)", tt.in)
	}
}

func TestProcReaders(t *testing.T) {
	ticks, err := cpuTicks(os.Getpid())
	require.NoError(t, err)
	require.GreaterOrEqual(t, ticks, int64(0))
	rss, err := rssKiB(os.Getpid())
	require.NoError(t, err)
	require.Positive(t, rss)
	_, err = cpuTicks(-1)
	require.Error(t, err)
}

func TestResultsMedians(t *testing.T) {
	rs := results{}
	for _, v := range []float64{9, 1, 5} {
		rs.add("anyedge", "P1_gbps", v)
	}
	got, ok := rs.med("anyedge", "P1_gbps")
	require.True(t, ok)
	require.Equal(t, 5.0, got)
	_, ok = rs.med("direct", "P1_gbps")
	require.False(t, ok)
}
