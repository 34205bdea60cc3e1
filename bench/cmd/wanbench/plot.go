//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"os"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// plotStyles draws each path the same way in every figure.
var plotStyles = map[string]struct {
	color color.Color
	shape draw.GlyphDrawer
}{
	"standin":       {color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, draw.SquareGlyph{}},
	"anyedge":       {color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, draw.CircleGlyph{}},
	"anyedge-nofec": {color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, draw.TriangleGlyph{}},
}

// readResults loads a report's raw samples.
func readResults(path string) (*results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// plots draws one figure per internet RTT and backbone variant: the
// median 10 MB download time of each accelerated path against the
// backbone's loss, and direct at each internet loss as a dashed level.
// The figures are written as base-RTT-VARIANT.png; it returns their paths.
func (r *results) plots(base string) ([]string, error) {
	type key struct {
		rtt     time.Duration
		variant string
	}
	var keys []key
	direct := map[time.Duration][]job{}
	for _, j := range r.Jobs {
		if j.Path == "direct" {
			direct[j.RTT] = append(direct[j.RTT], j)
			continue
		}
		if k := (key{j.RTT, j.Variant}); !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	var files []string
	for _, k := range keys {
		p := plot.New()
		bb := k.rtt
		if k.variant == "B" {
			bb = time.Duration(float64(k.rtt) * variantBRatio)
		}
		p.Title.Text = fmt.Sprintf("10 MB download, internet RTT %v, backbone %s (%v)", k.rtt, k.variant, bb)
		p.X.Label.Text = "backbone loss, % per direction"
		p.Y.Label.Text = "median download time, s"
		p.Y.Min = 0
		p.Legend.Top = true
		p.Legend.Left = true
		var maxX float64
		for _, path := range []string{"standin", "anyedge", "anyedge-nofec"} {
			var pts plotter.XYs
			for _, j := range r.Jobs {
				if j.Path != path || j.RTT != k.rtt || j.Variant != k.variant {
					continue
				}
				if v, _, ok := r.med(j, dl); ok {
					pts = append(pts, plotter.XY{X: j.Loss, Y: v})
					maxX = max(maxX, j.Loss)
				}
			}
			if len(pts) == 0 {
				continue
			}
			slices.SortFunc(pts, func(a, b plotter.XY) int {
				switch {
				case a.X < b.X:
					return -1
				case a.X > b.X:
					return 1
				}
				return 0
			})
			line, points, err := plotter.NewLinePoints(pts)
			if err != nil {
				return nil, err
			}
			st := plotStyles[path]
			line.Color, points.Color, points.Shape = st.color, st.color, st.shape
			line.Width = vg.Points(1.5)
			p.Add(line, points)
			label := pathNames[path]
			if path == "anyedge" {
				label = "anyedge (fec: auto)"
			}
			p.Legend.Add(label, line, points)
		}
		for i, d := range direct[k.rtt] {
			v, _, ok := r.med(d, dl)
			if !ok {
				continue
			}
			lvl, err := plotter.NewLine(plotter.XYs{{X: 0, Y: v}, {X: max(maxX, 1), Y: v}})
			if err != nil {
				return nil, err
			}
			lvl.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			lvl.Color = color.Gray{Y: uint8(40 + 60*i)}
			p.Add(lvl)
			p.Legend.Add(fmt.Sprintf("direct, %g %% internet loss", d.Loss), lvl)
		}
		name := fmt.Sprintf("%s-%s-%s.png", base, strings.ReplaceAll(k.rtt.String(), "ms", "ms"), k.variant)
		if err := p.Save(7*vg.Inch, 4.5*vg.Inch, name); err != nil {
			return nil, err
		}
		files = append(files, name)
	}
	return files, nil
}
