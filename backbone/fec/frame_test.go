package fec

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParityRoundTrip(t *testing.T) {
	b := appendParityHeader(nil, 8, 0xfffe, 1234, 0xbeef)
	b = append(b, 1, 2, 3)
	p, err := parseParity(b)
	require.NoError(t, err)
	require.Equal(t, parity{k: 8, group: 0xfffe, lenXor: 1234, sum: 0xbeef, payload: []byte{1, 2, 3}}, p)
	require.True(t, IsFrame(b))
}

func TestMalformedParity(t *testing.T) {
	for name, b := range map[string][]byte{
		"short":         {typeParity, 1, 0, 0, 0, 0, 0, 0, 1},
		"not a parity":  append(appendParityHeader(nil, 1, 0, 0, 0)[:0:0], typeReport, 1, 0, 0, 0, 0, 0, 0, 1, 2),
		"k of 0":        append(appendParityHeader(nil, 0, 0, 0, 0), 1, 2),
		"k over 16":     append(appendParityHeader(nil, MaxGroup+1, 0, 0, 0), 1, 2),
		"payload 1453":  append(appendParityHeader(nil, 2, 0, 0, 0), make([]byte, MaxData+1)...),
		"empty payload": appendParityHeader(nil, 2, 0, 0, 0),
	} {
		_, err := parseParity(b)
		require.ErrorIs(t, err, errFrame, name)
	}
}

func TestReportRoundTrip(t *testing.T) {
	r := report{groups: 7, covered: 100, lost: 3, recovered: 2}
	b := r.append(nil)
	require.Len(t, b, reportLen)
	got, err := parseReport(b)
	require.NoError(t, err)
	require.Equal(t, r, got)
	for name, b := range map[string][]byte{
		"short":                  b[:reportLen-1],
		"more lost than covered": report{covered: 1, lost: 2}.append(nil),
		"more rebuilt than lost": report{covered: 9, lost: 1, recovered: 2}.append(nil),
	} {
		_, err := parseReport(b)
		require.ErrorIs(t, err, errFrame, name)
	}
}

func TestIsFrameTellsQUICApart(t *testing.T) {
	for b := range 256 {
		require.Equal(t, b&0xc0 == 0, IsFrame([]byte{byte(b)}), "first byte %#x", b)
	}
	require.False(t, IsFrame(nil))
	require.False(t, IsFrame([]byte{0x40}), "a short header")
	require.False(t, IsFrame([]byte{0xc0}), "a long header")
}

func TestGroupForLoss(t *testing.T) {
	require.Equal(t, 16, groupFor(0))
	require.Equal(t, 16, groupFor(0.0005))
	require.Equal(t, 8, groupFor(0.001))
	require.Equal(t, 4, groupFor(0.002))
	require.Equal(t, 4, groupFor(0.05))
}
