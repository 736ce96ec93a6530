//! The report's sections, in the order of `docs/contract.md` §4.5: cover, verdict summary, media information,
//! model comparison, per-model details (with frame-score charts), methodology.

use chrono::{DateTime, Utc};
use serde_json::Value;

use drishtiksha_common::db::media::{Analysis, Media, Run};
use drishtiksha_common::model::{AnalysisStatus, MediaType, RunStatus};

use crate::chart::{CHART_HEIGHT, THRESHOLD, draw_frame_chart, frame_scores, frame_stats};
use crate::doc::{Align, BLACK, CONTENT_W, Doc, Font, MARGIN_X, MUTED, PAGE_W, RULE, Rgb, Style};
use crate::summary::{Risk, Summary, Verdict, report_id};

/// Everything a report shows; rendering is a pure function of it.
#[derive(Clone, Debug)]
pub struct ReportInput {
    pub media: Media,
    pub run: Run,
    pub generated_at: DateTime<Utc>,
}

pub const TITLE: &str = "Deepfake Detection Analysis Report";

const NAVY: Rgb = Rgb::hex(0x1e3a5f);
const ACCENT: Rgb = Rgb::hex(0x2563eb);
const RED: Rgb = Rgb::hex(0xb91c1c);
const RED_BG: Rgb = Rgb::hex(0xfdecec);
const GREEN: Rgb = Rgb::hex(0x15803d);
const GREEN_BG: Rgb = Rgb::hex(0xeaf7ee);
const AMBER: Rgb = Rgb::hex(0xb45309);
const GREY: Rgb = Rgb::hex(0x52606d);
const GREY_BG: Rgb = Rgb::hex(0xf1f3f5);
const ZEBRA: Rgb = Rgb::hex(0xf5f7fa);
const WHITE: Rgb = Rgb(1.0, 1.0, 1.0);

/// The PDF bytes of the report.
pub fn render_report(input: &ReportInput) -> Vec<u8> {
    let summary = Summary::of(&input.run.analyses);
    let id = report_id(input.generated_at);
    let mut doc = Doc::new();
    cover(&mut doc, input, &id);
    verdict_summary(&mut doc, input, &summary);
    media_information(&mut doc, &input.media);
    model_table(&mut doc, input);
    model_details(&mut doc, input);
    methodology(&mut doc);
    doc.finish(TITLE, |page, of| (format!("{TITLE} · {id}"), format!("Page {page} of {of}")))
}

fn cover(doc: &mut Doc, input: &ReportInput, id: &str) {
    doc.fill_rect(0.0, 0.0, PAGE_W, 112.0, NAVY);
    doc.fill_rect(0.0, 112.0, PAGE_W, 4.0, ACCENT);
    doc.text(MARGIN_X, 54.0, TITLE, Style::new(Font::Bold, 21.0, WHITE, Align::Left));
    doc.text(
        MARGIN_X,
        78.0,
        "Drishtiksha deepfake detection platform",
        Style::new(Font::Regular, 10.0, Rgb::hex(0xc7d2fe), Align::Left),
    );
    doc.y = 140.0;
    let media = &input.media;
    let run = &input.run;
    key_values(
        doc,
        &[
            ("File name", media.filename.clone()),
            ("Media ID", media.id.to_string()),
            ("Analysis run", format!("#{} ({})", run.run_number, run_status_label(run.status))),
            ("Run ID", run.id.to_string()),
            ("Analysis date", datetime(run.created_at)),
            ("Generated", datetime(input.generated_at)),
            ("Report ID", id.to_string()),
        ],
    );
}

fn verdict_summary(doc: &mut Doc, input: &ReportInput, s: &Summary) {
    section(doc, "Verdict summary");
    let verdict = s.verdict();
    let (fg, bg) = match verdict {
        Verdict::Deepfake => (RED, RED_BG),
        Verdict::Authentic => (GREEN, GREEN_BG),
        Verdict::Inconclusive => (GREY, GREY_BG),
    };
    doc.ensure(150.0);
    let top = doc.y;
    doc.fill_rect(MARGIN_X, top, CONTENT_W, 58.0, bg);
    doc.fill_rect(MARGIN_X, top, 5.0, 58.0, fg);
    doc.text(MARGIN_X + 18.0, top + 20.0, "VERDICT", Style::new(Font::Bold, 8.0, MUTED, Align::Left));
    doc.text(MARGIN_X + 18.0, top + 45.0, verdict.label(), Style::new(Font::Bold, 22.0, fg, Align::Left));
    let votes = format!("{} FAKE · {} REAL of {} completed", s.fake, s.real, s.completed);
    doc.text(MARGIN_X + CONTENT_W - 14.0, top + 36.0, &votes, Style::new(Font::Regular, 9.5, BLACK, Align::Right));
    doc.y = top + 70.0;

    let total = total_models(&input.run);
    let risk = s.risk();
    let risk_color = match risk {
        Risk::High => RED,
        Risk::Medium => AMBER,
        Risk::Low => GREEN,
        Risk::Unknown => GREY,
    };
    let tiles = [
        ("Average confidence", s.average_confidence.map_or_else(dash, percent), BLACK),
        ("Risk level", risk.label().to_string(), risk_color),
        ("Success rate", success_rate(s.completed, total), BLACK),
        ("Failed models", s.failed.to_string(), if s.failed > 0 { RED } else { BLACK }),
    ];
    let gap = 8.0;
    let tile_w = (CONTENT_W - gap * 3.0) / 4.0;
    let top = doc.y;
    for (i, (label, value, color)) in tiles.iter().enumerate() {
        let x = MARGIN_X + i as f32 * (tile_w + gap);
        doc.fill_rect(x, top, tile_w, 46.0, GREY_BG);
        doc.text(x + 10.0, top + 15.0, label, Style::new(Font::Regular, 8.0, MUTED, Align::Left));
        let value = doc.fit(value, Font::Bold, 13.0, tile_w - 20.0);
        doc.text(x + 10.0, top + 35.0, &value, Style::new(Font::Bold, 13.0, *color, Align::Left));
    }
    doc.y = top + 58.0;

    let extra = [
        ("Highest confidence", s.highest_confidence.map_or_else(dash, percent)),
        ("Lowest confidence", s.lowest_confidence.map_or_else(dash, percent)),
        ("Average processing time", s.average_processing_time.map_or_else(dash, seconds)),
    ];
    key_values(doc, &extra);
    doc.gap(4.0);
    doc.paragraph(MARGIN_X, CONTENT_W, &interpretation(input, s), Font::Regular, 9.5, BLACK);
}

fn interpretation(input: &ReportInput, s: &Summary) -> String {
    let run = &input.run;
    let mut text = match s.verdict() {
        Verdict::Deepfake => format!(
            "{} of {} completed models classified this media as manipulated (FAKE), with an average confidence of {}. \
             Treat the media as likely manipulated and verify its origin before relying on it.",
            s.fake,
            s.completed,
            s.average_confidence.map_or_else(dash, percent)
        ),
        Verdict::Authentic => format!(
            "{} of {} completed models classified this media as authentic (REAL) and {} as manipulated, with an \
             average confidence of {}. The models found no majority for manipulation; this is not proof of \
             authenticity.",
            s.real,
            s.completed,
            s.fake,
            s.average_confidence.map_or_else(dash, percent)
        ),
        Verdict::Inconclusive => {
            "No model completed its analysis of this media, so no verdict can be given.".to_string()
        }
    };
    if !run.status.is_terminal() {
        text.push_str(&format!(
            " The run is still in progress ({}); the figures cover the models that have finished so far.",
            run_status_label(run.status)
        ));
    } else if run.status == RunStatus::Cancelled {
        text.push_str(" The run was cancelled; results completed before the cancellation are included.");
    }
    if let Some(reason) = &run.error_message {
        text.push_str(&format!(" Run message: {reason}."));
    }
    text
}

fn media_information(doc: &mut Doc, media: &Media) {
    section(doc, "Media information");
    let meta = media.metadata.as_ref();
    let format = meta.and_then(|m| m.get("format"));
    let video = meta.and_then(|m| m.get("video")).filter(|v| v.is_object());
    let audio = meta.and_then(|m| m.get("audio")).filter(|v| v.is_object());
    let num = |v: Option<&Value>, key: &str| v.and_then(|v| v.get(key)).and_then(Value::as_f64).filter(|n| *n > 0.0);
    let text = |v: Option<&Value>, key: &str| {
        v.and_then(|v| v.get(key)).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
    };

    let mut rows = vec![
        ("File name", media.filename.clone()),
        ("Size", size(media.size)),
        ("Media type", media.media_type.as_str().to_string()),
        ("MIME type", media.mimetype.clone()),
        ("Duration", num(format, "duration").map_or_else(not_reported, |d| format!("{d:.2} s"))),
        ("Bit rate", num(format, "bitRate").map_or_else(not_reported, bit_rate)),
    ];
    if media.media_type != MediaType::Audio {
        let resolution = match (num(video, "width"), num(video, "height")) {
            (Some(w), Some(h)) => format!("{w:.0} × {h:.0}"),
            _ => not_reported(),
        };
        rows.push(("Resolution", resolution));
    }
    if media.media_type == MediaType::Video {
        rows.push(("Frame rate", text(video, "frameRate").map_or_else(not_reported, frame_rate)));
    }
    let mut codecs = Vec::new();
    if let Some(c) = text(video, "codecName") {
        codecs.push(format!("video {c}"));
    }
    if let Some(c) = text(audio, "codecName") {
        let mut s = format!("audio {c}");
        if let Some(rate) = num(audio, "sampleRate") {
            s.push_str(&format!(", {rate:.0} Hz"));
        }
        if let Some(ch) = num(audio, "channels") {
            s.push_str(&format!(", {ch:.0} ch"));
        }
        codecs.push(s);
    }
    rows.push(("Codecs", if codecs.is_empty() { not_reported() } else { codecs.join("; ") }));
    if media.media_type == MediaType::Video {
        let track = match media.has_audio {
            Some(true) => "present",
            Some(false) => "absent",
            None => "not determined",
        };
        rows.push(("Audio track", track.to_string()));
    }
    rows.push(("Upload date", datetime(media.created_at)));
    if let Some(d) = media.description.as_deref().filter(|d| !d.trim().is_empty()) {
        rows.push(("Description", d.to_string()));
    }
    key_values(doc, &rows);
}

struct Column {
    title: &'static str,
    width: f32,
    align: Align,
}

const COLUMNS: [Column; 6] = [
    Column { title: "Model", width: 142.0, align: Align::Left },
    Column { title: "Category", width: 58.0, align: Align::Left },
    Column { title: "Status", width: 76.0, align: Align::Left },
    Column { title: "Prediction", width: 62.0, align: Align::Left },
    Column { title: "Confidence", width: 68.0, align: Align::Right },
    Column { title: "Processing time", width: 89.28, align: Align::Right },
];
const ROW_H: f32 = 20.0;

fn model_table(doc: &mut Doc, input: &ReportInput) {
    section(doc, "Model comparison");
    if input.run.analyses.is_empty() {
        doc.paragraph(MARGIN_X, CONTENT_W, &no_models_text(&input.run), Font::Regular, 9.5, MUTED);
        return;
    }
    doc.ensure(ROW_H * 2.0);
    table_header(doc);
    for (i, a) in input.run.analyses.iter().enumerate() {
        if doc.ensure(ROW_H) {
            doc.text(
                MARGIN_X,
                doc.y + 10.0,
                "Model comparison (continued)",
                Style::new(Font::Bold, 10.0, NAVY, Align::Left),
            );
            doc.gap(18.0);
            table_header(doc);
        }
        let top = doc.y;
        if i % 2 == 1 {
            doc.fill_rect(MARGIN_X, top, CONTENT_W, ROW_H, ZEBRA);
        }
        let prediction_color = match a.prediction.as_str() {
            "FAKE" => RED,
            "REAL" => GREEN,
            _ => MUTED,
        };
        let cells = [
            (model_label(a), Font::Bold, BLACK),
            (category(a, input.media.media_type), Font::Regular, BLACK),
            (analysis_status_label(a.status).to_string(), Font::Regular, status_color(a.status)),
            (a.prediction.clone(), Font::Bold, prediction_color),
            (completed_value(a, a.confidence).map_or_else(dash, percent), Font::Regular, BLACK),
            (a.processing_time.map_or_else(dash, seconds), Font::Regular, BLACK),
        ];
        let mut x = MARGIN_X;
        for (col, (value, font, color)) in COLUMNS.iter().zip(cells) {
            let value = doc.fit(&value, font, 8.5, col.width - 12.0);
            let at = if col.align == Align::Right { x + col.width - 6.0 } else { x + 6.0 };
            doc.text(at, top + 13.5, &value, Style::new(font, 8.5, color, col.align));
            x += col.width;
        }
        doc.line((MARGIN_X, top + ROW_H), (MARGIN_X + CONTENT_W, top + ROW_H), RULE, 0.4);
        doc.y = top + ROW_H;
    }
}

fn table_header(doc: &mut Doc) {
    let top = doc.y;
    doc.fill_rect(MARGIN_X, top, CONTENT_W, ROW_H, NAVY);
    let mut x = MARGIN_X;
    for col in &COLUMNS {
        let at = if col.align == Align::Right { x + col.width - 6.0 } else { x + 6.0 };
        doc.text(at, top + 13.5, col.title, Style::new(Font::Bold, 8.5, WHITE, col.align));
        x += col.width;
    }
    doc.y = top + ROW_H;
}

fn model_details(doc: &mut Doc, input: &ReportInput) {
    section(doc, "Per-model details");
    if input.run.analyses.is_empty() {
        doc.paragraph(MARGIN_X, CONTENT_W, &no_models_text(&input.run), Font::Regular, 9.5, MUTED);
        return;
    }
    for a in &input.run.analyses {
        model_detail(doc, a);
        doc.gap(12.0);
    }
}

/// The model's name, with the model that answered after a server-side fallback.
fn model_label(a: &Analysis) -> String {
    match &a.model_used {
        Some(used) if *used != a.model_name => format!("{} (answered by {used})", a.model_name),
        _ => a.model_name.clone(),
    }
}

fn model_detail(doc: &mut Doc, a: &Analysis) {
    doc.ensure(90.0);
    let top = doc.y;
    doc.fill_rect(MARGIN_X, top, CONTENT_W, 24.0, GREY_BG);
    doc.fill_rect(MARGIN_X, top, 4.0, 24.0, status_color(a.status));
    let name = doc.fit(&model_label(a), Font::Bold, 11.0, CONTENT_W - 140.0);
    doc.text(MARGIN_X + 14.0, top + 16.0, &name, Style::new(Font::Bold, 11.0, BLACK, Align::Left));
    let status = analysis_status_label(a.status);
    doc.text(
        MARGIN_X + CONTENT_W - 10.0,
        top + 16.0,
        status,
        Style::new(Font::Bold, 9.0, status_color(a.status), Align::Right),
    );
    doc.y = top + 32.0;

    let payload = a.result_payload.as_ref().unwrap_or(&Value::Null);
    let mut rows: Vec<(&str, String)> = Vec::new();
    match a.status {
        AnalysisStatus::Completed => {
            rows.push(("Prediction", a.prediction.clone()));
            rows.push(("Confidence", percent(a.confidence)));
            rows.push(("Processing time", a.processing_time.map_or_else(dash, seconds)));
            if let Some(kind) = &a.media_type {
                rows.push(("Result type", kind.clone()));
            }
        }
        AnalysisStatus::Failed => {
            rows.push(("Error", a.error_message.clone().unwrap_or_else(|| "Analysis failed".to_string())));
            if let Some(attempts) = payload.get("attempts").and_then(Value::as_i64) {
                rows.push(("Attempts", attempts.to_string()));
            }
        }
        AnalysisStatus::Cancelled => {
            rows.push(("Error", a.error_message.clone().unwrap_or_else(|| "Analysis cancelled".to_string())));
        }
        AnalysisStatus::Pending | AnalysisStatus::Running => {
            rows.push(("Result", "Not available yet: the model has not finished.".to_string()));
        }
    }

    let scores = frame_scores(payload);
    if a.status == AnalysisStatus::Completed {
        let analysed = payload.get("frames_analyzed").and_then(Value::as_i64);
        let count = payload.get("frame_count").and_then(Value::as_i64);
        if analysed.is_some() || count.is_some() {
            let show = |v: Option<i64>| v.map_or_else(|| "n/a".to_string(), |n| n.to_string());
            rows.push(("Frames analysed / frame count", format!("{} / {}", show(analysed), show(count))));
        }
        if let Some(st) = frame_stats(&scores) {
            rows.push((
                "Frame scores",
                format!(
                    "mean {:.3} · max {:.3} · min {:.3} · {} of {} above {THRESHOLD}",
                    st.mean, st.max, st.min, st.above_threshold, st.count
                ),
            ));
        }
        for (key, value) in scalars(payload.get("metrics")) {
            rows.push(("", format!("{key}: {value}")));
        }
        for group in ["properties", "pitch", "energy", "spectral"] {
            for (key, value) in scalars(payload.get(group)) {
                rows.push(("", format!("{group}.{key}: {value}")));
            }
        }
        let dimension = |key: &str| payload.get("dimensions").and_then(|d| d.get(key)).and_then(Value::as_i64);
        if let (Some(w), Some(h)) = (dimension("width"), dimension("height")) {
            rows.push(("Dimensions", format!("{w} × {h}")));
        }
        if let Some(note) = payload.get("note").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            rows.push(("Note", note.to_string()));
        }
    }
    // Scalar metrics are listed under one label.
    let mut labelled = Vec::with_capacity(rows.len());
    let mut metrics_started = false;
    for (label, value) in rows {
        if label.is_empty() {
            labelled.push((if metrics_started { "" } else { "Metrics" }, value));
            metrics_started = true;
        } else {
            labelled.push((label, value));
        }
    }
    key_values(doc, &labelled);

    if a.status == AnalysisStatus::Completed
        && payload.get("media_type").and_then(Value::as_str) == Some("video")
        && !scores.is_empty()
    {
        doc.gap(6.0);
        doc.ensure(CHART_HEIGHT);
        draw_frame_chart(doc, &format!("Frame scores — {}", a.model_name), &scores);
    }
}

fn methodology(doc: &mut Doc) {
    section(doc, "Methodology");
    let paragraphs = [
        "Each selected detection model analyses the media independently and reports a prediction (REAL or FAKE) \
         with a confidence. The report combines the models by majority vote over the completed analyses: the \
         verdict is DEEPFAKE when more models predict FAKE than REAL, AUTHENTIC otherwise, and INCONCLUSIVE \
         when no model completed. Failed, cancelled and unfinished analyses do not vote.",
        "Confidence is the model's probability for the class it predicted, so it normally lies between 50 % and \
         100 %. Frame scores are per-frame (or per-window) probabilities that the content is fake; units above \
         0.5 count as suspicious.",
        "Risk level: UNKNOWN without a completed model; LOW when no model predicts FAKE; HIGH when at least 60 % \
         of the completed models predict FAKE and their average confidence is above 70 %; MEDIUM when at least \
         40 % predict FAKE; LOW otherwise.",
        "Limitations: automated detection can produce false positives and false negatives, particularly on \
         heavily compressed, low-resolution or unusual media and on manipulation techniques the models were not \
         trained on. This report supports, and does not replace, expert review.",
    ];
    for p in paragraphs {
        doc.paragraph(MARGIN_X, CONTENT_W, p, Font::Regular, 9.5, BLACK);
        doc.gap(6.0);
    }
}

fn section(doc: &mut Doc, title: &str) {
    doc.gap(10.0);
    doc.ensure(60.0);
    let top = doc.y;
    doc.fill_rect(MARGIN_X, top, 4.0, 16.0, ACCENT);
    doc.text(MARGIN_X + 12.0, top + 13.0, title, Style::new(Font::Bold, 13.5, NAVY, Align::Left));
    doc.line((MARGIN_X, top + 22.0), (MARGIN_X + CONTENT_W, top + 22.0), RULE, 0.6);
    doc.y = top + 32.0;
}

/// Label / value rows; values wrap, rows never split across pages.
fn key_values(doc: &mut Doc, rows: &[(&str, String)]) {
    const LABEL_W: f32 = 168.0;
    const SIZE: f32 = 9.5;
    const LEADING: f32 = 14.0;
    for (label, value) in rows {
        let lines = doc.wrap(value, Font::Regular, SIZE, CONTENT_W - LABEL_W);
        let height = LEADING * lines.len().max(1) as f32 + 2.0;
        doc.ensure(height);
        let top = doc.y;
        doc.text(MARGIN_X, top + SIZE, label, Style::new(Font::Bold, 8.5, MUTED, Align::Left));
        for (i, line) in lines.iter().enumerate() {
            doc.text(
                MARGIN_X + LABEL_W,
                top + SIZE + LEADING * i as f32,
                line,
                Style::new(Font::Regular, SIZE, BLACK, Align::Left),
            );
        }
        doc.y = top + height;
    }
}

/// Scalar entries of a JSON object, formatted; arrays and objects are left out.
fn scalars(v: Option<&Value>) -> Vec<(String, String)> {
    let Some(Value::Object(map)) = v else { return Vec::new() };
    map.iter()
        .filter_map(|(k, v)| {
            let shown = match v {
                Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
                Value::Number(n) => n.as_f64().map(|f| format!("{f:.4}"))?,
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((k.clone(), shown))
        })
        .collect()
}

fn no_models_text(run: &Run) -> String {
    match &run.error_message {
        Some(reason) => format!("No model analysed this media. {reason}."),
        None if !run.status.is_terminal() => "No model has been dispatched yet.".to_string(),
        None => "No model analysed this media.".to_string(),
    }
}

fn total_models(run: &Run) -> usize {
    usize::try_from(run.total_models).unwrap_or(0).max(run.analyses.len())
}

fn completed_value(a: &Analysis, v: f64) -> Option<f64> {
    (a.status == AnalysisStatus::Completed).then_some(v)
}

/// The kind of input the model judged: its result's media type, else the media's.
fn category(a: &Analysis, media_type: MediaType) -> String {
    let kind = a.media_type.as_deref().unwrap_or(media_type.as_str());
    let mut chars = kind.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars.flat_map(char::to_lowercase)).collect(),
        None => dash(),
    }
}

fn status_color(status: AnalysisStatus) -> Rgb {
    match status {
        AnalysisStatus::Completed => GREEN,
        AnalysisStatus::Failed => RED,
        AnalysisStatus::Cancelled => GREY,
        AnalysisStatus::Pending | AnalysisStatus::Running => AMBER,
    }
}

fn analysis_status_label(status: AnalysisStatus) -> &'static str {
    match status {
        AnalysisStatus::Pending => "PENDING",
        AnalysisStatus::Running => "RUNNING",
        AnalysisStatus::Completed => "COMPLETED",
        AnalysisStatus::Failed => "FAILED",
        AnalysisStatus::Cancelled => "CANCELLED",
    }
}

fn run_status_label(status: RunStatus) -> &'static str {
    status.as_str()
}

fn success_rate(completed: usize, total: usize) -> String {
    if total == 0 {
        return format!("{completed} / 0");
    }
    format!("{completed} / {total} ({:.0}%)", completed as f64 * 100.0 / total as f64)
}

fn datetime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn percent(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn seconds(v: f64) -> String {
    format!("{v:.2} s")
}

fn dash() -> String {
    "—".to_string()
}

fn not_reported() -> String {
    "not reported".to_string()
}

fn size(bytes: i64) -> String {
    let b = bytes as f64;
    let human = if b >= 1_048_576.0 {
        format!("{:.2} MB", b / 1_048_576.0)
    } else if b >= 1024.0 {
        format!("{:.1} kB", b / 1024.0)
    } else {
        return format!("{bytes} bytes");
    };
    format!("{human} ({bytes} bytes)")
}

fn bit_rate(bps: f64) -> String {
    if bps >= 1_000_000.0 { format!("{:.2} Mbit/s", bps / 1_000_000.0) } else { format!("{:.0} kbit/s", bps / 1000.0) }
}

/// `30000/1001` → `30000/1001 (29.97 fps)`.
fn frame_rate(raw: String) -> String {
    let parsed = match raw.split_once('/') {
        Some((n, d)) => {
            n.trim().parse::<f64>().ok().zip(d.trim().parse::<f64>().ok()).filter(|(_, d)| *d > 0.0).map(|(n, d)| n / d)
        }
        None => raw.trim().parse::<f64>().ok(),
    };
    match parsed {
        Some(fps) if fps > 0.0 => format!("{raw} ({fps:.2} fps)"),
        _ => raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_rate_shows_the_ratio_and_frames_per_second() {
        assert_eq!(frame_rate("30000/1001".into()), "30000/1001 (29.97 fps)");
        assert_eq!(frame_rate("0/0".into()), "0/0");
    }

    #[test]
    fn size_is_shown_human_readable_with_the_exact_byte_count() {
        assert_eq!(size(5_242_880), "5.00 MB (5242880 bytes)");
        assert_eq!(size(512), "512 bytes");
    }

    #[test]
    fn success_rate_handles_runs_without_models() {
        assert_eq!(success_rate(0, 0), "0 / 0");
        assert_eq!(success_rate(3, 4), "3 / 4 (75%)");
    }
}
