package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"os"
	"time"

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

// span is the time axis of the figure a measuring run draws (-plot-span).
var span = 10 * time.Second

// replot draws file from the results an earlier run wrote to from.
func replot(from, file string, span time.Duration) error {
	if file == "" {
		return errors.New("-from needs -plot")
	}
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	var results []result
	if err := json.Unmarshal(b, &results); err != nil {
		return fmt.Errorf("%s: %w", from, err)
	}
	return plotCwnd(results, "one QUIC connection through the lab's backbone: the sender's congestion window", file, span)
}

// plotCwnd draws the sender's congestion window over the first span of
// each download, one line per download, into file (PNG).
func plotCwnd(results []result, title, file string, span time.Duration) error {
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
	p.X.Min, p.X.Max = 0, span.Seconds() // after the lines, which widen the axis to their data
	return p.Save(8*vg.Inch, 4.5*vg.Inch, file)
}
