package main

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// traceColors tell the conditions of one figure apart.
var traceColors = []color.Color{
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
	color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff},
}

// plotCwnd draws the sender's congestion window over time, one line per
// download, into file (PNG).
func plotCwnd(results []result, title, file string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "time since the download started, s"
	p.Y.Label.Text = "congestion window, MB"
	p.Y.Min = 0
	p.Legend.Top = true
	for i, r := range results {
		pts := make(plotter.XYs, 0, len(r.Samples))
		for _, s := range r.Samples {
			pts = append(pts, plotter.XY{X: s.T, Y: float64(s.Cwnd) / 1e6})
		}
		if len(pts) == 0 {
			continue
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		l.Color = traceColors[i%len(traceColors)]
		l.Width = vg.Points(1.5)
		p.Add(l)
		fec := "FEC off"
		if r.FEC {
			fec = "FEC on"
		}
		end := fmt.Sprintf("%.0f Mbit/s", r.Mbit)
		if r.Err != "" {
			end = "connection closed: " + r.Err
		}
		p.Legend.Add(fmt.Sprintf("%g %% loss, %s, run %d: %s", r.Loss, fec, r.Run, end), l)
	}
	return p.Save(8*vg.Inch, 4.5*vg.Inch, file)
}
