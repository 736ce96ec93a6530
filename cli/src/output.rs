//! Results on stdout (tables or JSON), progress and notes on stderr; colour only on terminals and
//! never with `NO_COLOR`.

use std::io::IsTerminal as _;

use comfy_table::{Cell, Color, ContentArrangement, Table, presets};

use crate::model::{Media, Run, verdict};

/// What the two output streams are connected to.
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    pub color_out: bool,
    pub color_err: bool,
    /// Live bars on stderr (a terminal); otherwise one plain line per step.
    pub bars: bool,
    pub quiet: bool,
}

impl Ui {
    pub fn detect(quiet: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let out_tty = std::io::stdout().is_terminal();
        let err_tty = std::io::stderr().is_terminal();
        console::set_colors_enabled(out_tty && !no_color);
        console::set_colors_enabled_stderr(err_tty && !no_color);
        Self { color_out: out_tty && !no_color, color_err: err_tty && !no_color, bars: err_tty && !quiet, quiet }
    }

    /// A note on stderr (suppressed by `--quiet`).
    pub fn note(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }

    pub fn table(&self) -> Table {
        let mut t = Table::new();
        t.load_preset(presets::UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic);
        if self.color_out {
            t.enforce_styling();
        } else {
            t.force_no_tty();
        }
        t
    }
}

fn status_color(status: &str) -> Option<Color> {
    match status {
        "ANALYZED" | "COMPLETED" | "AUTHENTIC" | "REAL" => Some(Color::Green),
        "FAILED" | "DEEPFAKE" | "FAKE" => Some(Color::Red),
        "CANCELLED" | "PARTIALLY_ANALYZED" | "INCONCLUSIVE" => Some(Color::Yellow),
        _ => None,
    }
}

pub fn colored(text: &str) -> Cell {
    let cell = Cell::new(text);
    match status_color(text) {
        Some(c) => cell.fg(c),
        None => cell,
    }
}

pub fn percent(confidence: f64) -> String {
    format!("{:.1}%", confidence * 100.0)
}

/// One row per file and model: file, run status, verdict, model, prediction, confidence, and the
/// reason of every failure.
pub fn results_table(ui: &Ui, results: &[(Media, Option<Run>)]) -> Table {
    let mut t = ui.table();
    t.set_header(["File", "Status", "Verdict", "Model", "Prediction", "Confidence", "Note"]);
    for (media, run) in results {
        let Some(run) = run else {
            t.add_row(vec![Cell::new(&media.filename), colored(&media.status), Cell::new(""), Cell::new("")]);
            continue;
        };
        let head = |first: bool| -> [Cell; 3] {
            if first {
                [Cell::new(&media.filename), colored(&run.status), colored(verdict(run))]
            } else {
                [Cell::new(""), Cell::new(""), Cell::new("")]
            }
        };
        if run.analyses.is_empty() {
            let note = run.error_message.clone().unwrap_or_default();
            let [a, b, c] = head(true);
            t.add_row(vec![a, b, c, Cell::new("—"), Cell::new(""), Cell::new(""), Cell::new(note)]);
        }
        for (i, a) in run.analyses.iter().enumerate() {
            let [f, s, v] = head(i == 0);
            let done = a.status == "COMPLETED";
            let note = match (&a.error_message, a.model_used()) {
                (Some(e), _) => e.clone(),
                (None, Some(used)) if used != a.model_name => format!("model used: {used}"),
                _ if !done => a.status.to_lowercase(),
                _ => String::new(),
            };
            t.add_row(vec![
                f,
                s,
                v,
                Cell::new(&a.model_name),
                if done { colored(&a.prediction) } else { colored(&a.status) },
                Cell::new(if done { percent(a.confidence) } else { String::new() }),
                Cell::new(note),
            ]);
        }
    }
    t
}
