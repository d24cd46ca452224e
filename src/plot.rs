//! SVG plots of a run, drawn with plotters' SVG backend: the loss and accuracy curves, the
//! test set's confusion matrix, and per-layer gradient norms (one panel per run, side by side,
//! on a shared logarithmic scale, to compare runs such as a deep sigmoid MLP and its ReLU twin).

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::metrics::Row;
use crate::trainer::Confusion;
use nnc_check::Score;

const TRAIN: RGBColor = RGBColor(31, 119, 180);
const VAL: RGBColor = RGBColor(255, 127, 14);
const TEST: RGBColor = RGBColor(44, 160, 44);
const FONT: &str = "sans-serif";

/// Distinct colours for series that are not ordered (matplotlib's tab10).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// A named, coloured series of (epoch, value) points.
type Line<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

fn err<E: std::fmt::Display>(e: E) -> String {
    format!("cannot draw the plot: {e}")
}

/// The x range covering epochs `first..=last` with a margin, never empty.
fn epoch_range(rows: &[Row]) -> std::ops::Range<f64> {
    let first = rows.first().map_or(1, Row::epoch) as f64;
    let last = rows.last().map_or(1, Row::epoch) as f64;
    let pad = ((last - first) * 0.03).max(0.5);
    first - pad..last + pad
}

/// Epochs are whole numbers: ticks between them get no label.
fn epoch_label(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-6 {
        format!("{}", x.round())
    } else {
        String::new()
    }
}

/// The values of `column` as (epoch, value) points, skipping rows without it.
fn series(rows: &[Row], column: &str) -> Vec<(f64, f64)> {
    rows.iter()
        .filter_map(|r| {
            r.get(column)
                .filter(|v| v.is_finite())
                .map(|v| (r.epoch() as f64, v))
        })
        .collect()
}

/// Loss (left) and the score (middle: accuracy, or the mean absolute error) per epoch, train vs
/// validation vs test; with a learning-rate schedule, the rate of each epoch's last step
/// (right, on a log scale).
pub fn curves(rows: &[Row], title: &str, score: Score) -> Result<String, String> {
    let mut svg = String::new();
    let rates = series(rows, "lr");
    {
        let panels = if rates.is_empty() { 2 } else { 3 };
        let root = SVGBackend::with_string(&mut svg, (500 * panels, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, (FONT, 20)).map_err(err)?;
        let panels = root.split_evenly((1, panels as usize));
        if let Some(panel) = panels.get(2) {
            draw_rates(panel, rows, &rates)?;
        }
        let panel_names = [("loss", "loss"), (score.key(), score.title())];
        for (panel, (metric, name)) in panels.iter().zip(panel_names) {
            let lines: Vec<Line<'_>> = [("train", TRAIN), ("val", VAL), ("test", TEST)]
                .into_iter()
                .map(|(part, color)| (part, color, series(rows, &format!("{part}_{metric}"))))
                .filter(|(_, _, s)| !s.is_empty())
                .collect();
            let values = lines.iter().flat_map(|(_, _, s)| s.iter().map(|p| p.1));
            let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
            let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
            let y = if metric == "acc" {
                (lo - 0.02).max(0.0)..(hi + 0.01).min(1.0).max(lo + 0.01)
            } else {
                0.0..(hi * 1.05).max(1e-9)
            };
            // Accuracy rises and loss falls: the legend goes where the lines end up least.
            let corner = if metric == "acc" {
                SeriesLabelPosition::LowerRight
            } else {
                SeriesLabelPosition::UpperRight
            };
            draw_lines(panel, name, rows, y, &lines, corner)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// The learning rate per epoch on a log scale (zeros, which a log scale cannot show, left out).
fn draw_rates(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    rows: &[Row],
    rates: &[(f64, f64)],
) -> Result<(), String> {
    let positive: Vec<(f64, f64)> = rates.iter().copied().filter(|p| p.1 > 0.0).collect();
    let y = log_range(positive.iter().map(|p| p.1));
    let caption = ("learning rate", 16, 10);
    let mut chart = log_chart(area, caption, rows, y, "lr (last step of the epoch)")?;
    chart
        .draw_series(LineSeries::new(
            positive.iter().copied(),
            TRAIN.stroke_width(2),
        ))
        .map_err(err)?;
    if positive.len() <= 60 {
        chart
            .draw_series(positive.iter().map(|&p| Circle::new(p, 3, TRAIN.filled())))
            .map_err(err)?;
    }
    Ok(())
}

/// The range of a log axis over positive `values`, a factor of 2 beyond them on each side;
/// `1e-6..1` when there are none.
fn log_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .filter(|v| *v > 0.0)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo.is_finite() {
        lo / 2.0..hi * 2.0
    } else {
        1e-6..1.0
    }
}

/// A chart of epochs against a log axis `y`, its mesh drawn; `caption` is its text, size and
/// the chart's margin.
fn log_chart<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    (caption, size, margin): (&str, u32, u32),
    rows: &[Row],
    y: std::ops::Range<f64>,
    y_desc: &str,
) -> Result<ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, LogCoord<f64>>>, String> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, size))
        .margin(margin)
        .x_label_area_size(35)
        .y_label_area_size(65)
        .build_cartesian_2d(epoch_range(rows), y.log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .x_label_formatter(&epoch_label)
        .y_label_formatter(&|y| tick(*y))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    Ok(chart)
}

/// A tick label of a log axis that reads as a number: `0.9`, `0.05`, `20`, `1e-6`.
fn tick(y: f64) -> String {
    if y == 0.0 || !y.is_finite() {
        return format!("{y}");
    }
    let magnitude = y.abs().log10().floor();
    if (-3.0..5.0).contains(&magnitude) {
        // Two significant digits, without trailing zeros.
        let decimals = (1.0 - magnitude).max(0.0) as usize;
        let text = format!("{y:.decimals$}");
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    } else {
        format!("{y:.0e}")
    }
}

fn draw_lines(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    name: &str,
    rows: &[Row],
    y: std::ops::Range<f64>,
    lines: &[Line<'_>],
    corner: SeriesLabelPosition,
) -> Result<(), String> {
    let mut chart = ChartBuilder::on(area)
        .caption(name, (FONT, 16))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(epoch_range(rows), y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(name)
        .x_label_formatter(&epoch_label)
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    let markers = rows.len() <= 60;
    for (label, color, points) in lines {
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(*label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        if markers {
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(err)?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .position(corner)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// The confusion matrix: rows are true classes, columns predicted ones; each cell shows its
/// count. The diagonal is shaded blue by its share of the row; a mistake red, on a log scale of
/// the largest mistake's count with a visible floor, so that a few confusions show beside
/// thousands of right answers.
pub fn confusion(c: &Confusion, title: &str) -> Result<String, String> {
    let k = c.classes as i32;
    let cell = 44;
    let (left, top) = (70, 70);
    let size = ((left + cell * k + 30) as u32, (top + cell * k + 60) as u32);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let text = |s: &str, px: i32, color: &RGBColor| (s.to_string(), centred(px, *color));
        let (t, style) = text(title, 18, &BLACK);
        root.draw(&Text::new(t, (size.0 as i32 / 2, 20), style))
            .map_err(err)?;
        let support = c.support();
        let worst = (0..c.classes)
            .flat_map(|t| (0..c.classes).filter(move |&p| p != t).map(move |p| (t, p)))
            .map(|(t, p)| c.get(t, p))
            .max()
            .unwrap_or(0);
        for truth in 0..k {
            for pred in 0..k {
                let n = c.get(truth as usize, pred as usize);
                let row = support[truth as usize].max(1) as f64;
                let (share, full) = if truth == pred {
                    (n as f64 / row, (8, 81, 156))
                } else if n > 0 {
                    let t = (n as f64).ln_1p() / (worst as f64).ln_1p().max(f64::MIN_POSITIVE);
                    (0.15 + 0.7 * t, (203, 24, 29))
                } else {
                    (0.0, (255, 255, 255))
                };
                let shade = |full: u8| (255.0 - (255.0 - f64::from(full)) * share) as u8;
                let fill = RGBColor(shade(full.0), shade(full.1), shade(full.2));
                let (x, y) = (left + pred * cell, top + truth * cell);
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    fill.filled(),
                ))
                .map_err(err)?;
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    BLACK.mix(0.15).stroke_width(1),
                ))
                .map_err(err)?;
                let ink = if share > 0.5 { WHITE } else { BLACK };
                let (t, style) = text(&n.to_string(), 12, &ink);
                root.draw(&Text::new(t, (x + cell / 2, y + cell / 2), style))
                    .map_err(err)?;
            }
            let (t, style) = text(&truth.to_string(), 14, &BLACK);
            root.draw(&Text::new(
                t,
                (left - 14, top + truth * cell + cell / 2),
                style,
            ))
            .map_err(err)?;
            let (t, style) = text(&truth.to_string(), 14, &BLACK);
            root.draw(&Text::new(
                t,
                (left + truth * cell + cell / 2, top - 14),
                style,
            ))
            .map_err(err)?;
        }
        let (t, style) = text("predicted", 14, &BLACK);
        root.draw(&Text::new(t, (left + cell * k / 2, top - 34), style))
            .map_err(err)?;
        let (t, style) = text("true", 14, &BLACK);
        root.draw(&Text::new(t, (left - 45, top + cell * k / 2), style))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// A text style centred on its position.
fn centred(px: i32, color: RGBColor) -> TextStyle<'static> {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    TextStyle {
        font: (FONT, px).into_font(),
        color: color.to_backend_color(),
        pos: Pos::new(HPos::Center, VPos::Center),
    }
}

/// Per-layer gradient norms per epoch, one panel per run, on a shared log scale, each layer in
/// a colour of its own (a categorical palette, in layer order).
pub fn grad_norms(runs: &[(&str, &[Row])]) -> Result<String, String> {
    let width = 520 * runs.len().max(1) as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let columns = |rows: &[Row]| -> Vec<String> {
            rows.first()
                .map(|r| {
                    r.0.iter()
                        .filter(|(k, _)| k.starts_with("grad_norm."))
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default()
        };
        let all = runs
            .iter()
            .flat_map(|(_, rows)| {
                columns(rows)
                    .into_iter()
                    .flat_map(move |c| series(rows, &c))
            })
            .map(|p| p.1);
        let y = log_range(all);
        let panels = root.split_evenly((1, runs.len().max(1)));
        for (panel, (title, rows)) in panels.iter().zip(runs) {
            // The legend gets its own strip: the lines span the whole height.
            let (w, _) = panel.dim_in_pixel();
            let (plot_area, legend) = panel.split_horizontally(w.saturating_sub(70));
            let y_desc = "gradient norm (RMS per epoch)";
            let mut chart = log_chart(&plot_area, (*title, 18, 12), rows, y.clone(), y_desc)?;
            let cols = columns(rows);
            for (i, col) in cols.iter().enumerate() {
                let color = PALETTE[i % PALETTE.len()];
                chart
                    .draw_series(LineSeries::new(series(rows, col), color.stroke_width(2)))
                    .map_err(err)?;
                let y = 50 + 18 * i as i32;
                legend
                    .draw(&PathElement::new(
                        vec![(4, y), (24, y)],
                        color.stroke_width(3),
                    ))
                    .map_err(err)?;
                let label = col.trim_start_matches("grad_norm.").to_string();
                let style = TextStyle {
                    pos: plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Left,
                        plotters::style::text_anchor::VPos::Center,
                    ),
                    ..centred(12, BLACK)
                };
                legend
                    .draw(&Text::new(label, (30, y), style))
                    .map_err(err)?;
            }
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_confusion_among_thousands_shows() {
        let mut c = Confusion::new(2);
        for _ in 0..1000 {
            c.add(0, 0);
            c.add(1, 1);
        }
        c.add(0, 1);
        let svg = confusion(&c, "t").expect("svg");
        // The lone mistake is the largest: red at 85 % (0.15 floor + 0.7 of the log scale).
        assert!(svg.to_uppercase().contains("#D23A3E"), "{svg}");
    }

    #[test]
    fn log_ticks_read_as_numbers() {
        assert_eq!(tick(0.9), "0.9");
        assert_eq!(tick(0.05), "0.05");
        assert_eq!(tick(0.002), "0.002");
        assert_eq!(tick(20.0), "20");
        assert_eq!(tick(1.0), "1");
        assert_eq!(tick(1e-6), "1e-6");
    }
}
