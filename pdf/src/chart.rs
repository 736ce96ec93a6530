//! Frame scores of video results: reading `frame_predictions`, their statistics, and the chart of
//! score (0–1) against index with the 0.5 decision threshold.

use serde_json::Value;

use crate::doc::{Align, CONTENT_W, Doc, Font, MARGIN_X, MUTED, RULE, Rgb, Style};

/// A unit above this score counts as suspicious (the models' own FAKE threshold).
pub const THRESHOLD: f64 = 0.5;

const LINE: Rgb = Rgb::hex(0x2563eb);
const THRESHOLD_RED: Rgb = Rgb::hex(0xdc2626);
const PLOT_BG: Rgb = Rgb::hex(0xf8fafc);
const GRID: Rgb = Rgb::hex(0xe2e8f0);

/// `(index, score)` of every well-formed entry of `frame_predictions`, scores clamped to 0–1. An
/// entry without a numeric `index` takes its position.
pub fn frame_scores(payload: &Value) -> Vec<(f64, f64)> {
    let Some(items) = payload.get("frame_predictions").and_then(Value::as_array) else { return Vec::new() };
    items
        .iter()
        .enumerate()
        .filter_map(|(pos, item)| {
            let score = item.get("score").and_then(Value::as_f64)?;
            if !score.is_finite() {
                return None;
            }
            let index = item.get("index").and_then(Value::as_f64).filter(|i| i.is_finite()).unwrap_or(pos as f64);
            Some((index, score.clamp(0.0, 1.0)))
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq)]
pub struct FrameStats {
    pub count: usize,
    pub mean: f64,
    pub max: f64,
    pub min: f64,
    pub above_threshold: usize,
}

pub fn frame_stats(scores: &[(f64, f64)]) -> Option<FrameStats> {
    if scores.is_empty() {
        return None;
    }
    let values = scores.iter().map(|(_, s)| *s);
    Some(FrameStats {
        count: scores.len(),
        mean: values.clone().sum::<f64>() / scores.len() as f64,
        max: values.clone().fold(f64::MIN, f64::max),
        min: values.clone().fold(f64::MAX, f64::min),
        above_threshold: values.filter(|s| *s > THRESHOLD).count(),
    })
}

/// Height the chart takes at the cursor.
pub const CHART_HEIGHT: f32 = 196.0;

/// Draws the chart at the cursor (the caller ensures [`CHART_HEIGHT`] fits) and advances it.
pub fn draw_frame_chart(doc: &mut Doc, title: &str, scores: &[(f64, f64)]) {
    let top = doc.y;
    doc.text(MARGIN_X, top + 10.0, title, Style::new(Font::Bold, 9.5, crate::doc::BLACK, Align::Left));
    doc.text(MARGIN_X, top + 24.0, "Score (P(fake), 0–1)", Style::new(Font::Regular, 7.5, MUTED, Align::Left));

    let plot_x = MARGIN_X + 30.0;
    let plot_w = CONTENT_W - 40.0;
    let plot_top = top + 30.0;
    let plot_h = 120.0;
    let y_of = |score: f64| plot_top + plot_h * (1.0 - score as f32);

    doc.fill_rect(plot_x, plot_top, plot_w, plot_h, PLOT_BG);
    for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let y = y_of(tick);
        doc.line((plot_x, y), (plot_x + plot_w, y), GRID, 0.5);
        doc.text(plot_x - 4.0, y + 2.5, &format!("{tick:.2}"), Style::new(Font::Regular, 7.0, MUTED, Align::Right));
    }
    doc.stroke_rect(plot_x, plot_top, plot_w, plot_h, RULE, 0.6);

    let (first, last) = scores.iter().fold((f64::MAX, f64::MIN), |(lo, hi), (i, _)| (lo.min(*i), hi.max(*i)));
    let span = if last > first { last - first } else { 1.0 };
    let x_of = |index: f64| {
        if scores.len() == 1 { plot_x + plot_w / 2.0 } else { plot_x + plot_w * ((index - first) / span) as f32 }
    };

    let threshold_y = y_of(THRESHOLD);
    doc.polyline(&[(plot_x, threshold_y), (plot_x + plot_w, threshold_y)], THRESHOLD_RED, 1.0, Some((4.0, 3.0)));
    doc.text(
        plot_x + plot_w - 4.0,
        threshold_y - 3.0,
        "threshold 0.5",
        Style::new(Font::Regular, 7.0, THRESHOLD_RED, Align::Right),
    );

    let points: Vec<(f32, f32)> = scores.iter().map(|(i, s)| (x_of(*i), y_of(*s))).collect();
    doc.polyline(&points, LINE, 1.1, None);
    if points.len() <= 60 {
        doc.markers(&points, LINE, 2.6);
    }

    let axis_y = plot_top + plot_h + 10.0;
    let label = |v: f64| format!("{:.0}", v.round());
    doc.text(plot_x, axis_y, &label(first.min(last)), Style::new(Font::Regular, 7.0, MUTED, Align::Left));
    if scores.len() > 1 {
        doc.text(
            plot_x + plot_w / 2.0,
            axis_y,
            &label((first + last) / 2.0),
            Style::new(Font::Regular, 7.0, MUTED, Align::Center),
        );
        doc.text(plot_x + plot_w, axis_y, &label(last), Style::new(Font::Regular, 7.0, MUTED, Align::Right));
    }
    doc.text(
        plot_x + plot_w / 2.0,
        axis_y + 12.0,
        "Frame / unit index",
        Style::new(Font::Regular, 7.5, MUTED, Align::Center),
    );

    let legend_y = axis_y + 26.0;
    doc.line((plot_x, legend_y - 3.0), (plot_x + 18.0, legend_y - 3.0), LINE, 1.4);
    doc.text(plot_x + 22.0, legend_y, "frame score", Style::new(Font::Regular, 7.5, MUTED, Align::Left));
    doc.polyline(
        &[(plot_x + 90.0, legend_y - 3.0), (plot_x + 108.0, legend_y - 3.0)],
        THRESHOLD_RED,
        1.0,
        Some((4.0, 3.0)),
    );
    doc.text(plot_x + 112.0, legend_y, "0.5 decision threshold", Style::new(Font::Regular, 7.5, MUTED, Align::Left));
    doc.y = top + CHART_HEIGHT;
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn frame_scores_skip_malformed_entries_and_clamp_scores() {
        let payload = json!({"frame_predictions": [
            {"index": 0, "score": 0.9, "prediction": "FAKE"},
            {"index": 1, "prediction": "REAL"},
            {"score": 1.4},
            {"index": 7, "score": -0.2}
        ]});
        assert_eq!(frame_scores(&payload), vec![(0.0, 0.9), (2.0, 1.0), (7.0, 0.0)]);
    }

    #[test]
    fn frame_scores_are_empty_without_frame_predictions() {
        assert!(frame_scores(&json!({"frame_predictions": null})).is_empty());
        assert!(frame_scores(&json!({})).is_empty());
    }

    #[test]
    fn frame_stats_count_scores_strictly_above_the_threshold() {
        let s = frame_stats(&[(0.0, 0.2), (1.0, 0.5), (2.0, 0.8), (3.0, 0.9)]).expect("stats");
        assert_eq!(s.count, 4);
        assert_eq!(s.above_threshold, 2);
        assert_eq!(s.max, 0.9);
        assert_eq!(s.min, 0.2);
        assert!((s.mean - 0.6).abs() < 1e-9);
        assert_eq!(frame_stats(&[]), None);
    }
}
