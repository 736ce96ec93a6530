//! Following runs until they end: per-model bars driven by the Socket.IO events (§7.5), with
//! `GET /media/:id` as the source of truth — on start (so `watch` resumes where the server is), on
//! every run-level event, now and then as a safety net, and with backoff when there is no socket.

use std::collections::BTreeMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use crate::client::{Api, CliError};
use crate::model::{Media, Run, is_terminal, verdict};
use crate::output::{Ui, percent};
use crate::socket::{self, Event};

/// A run to follow.
#[derive(Debug, Clone)]
pub struct Target {
    pub media_id: String,
    pub filename: String,
    /// `None`: the media's latest run.
    pub run_id: Option<String>,
}

pub struct Outcome {
    pub results: Vec<(Media, Option<Run>)>,
    /// Ctrl-C: the runs go on on the server.
    pub interrupted: bool,
}

/// With a socket, a full refresh this often anyway (events are best-effort).
const SAFETY_POLL: Duration = Duration::from_secs(10);
/// Without one, polling backs off from the first to the last interval while nothing changes.
const POLL_MIN: Duration = Duration::from_secs(1);
const POLL_MAX: Duration = Duration::from_secs(8);
/// How long the server may stay unreachable before watching gives up.
const UNREACHABLE_LIMIT: Duration = Duration::from_secs(120);

/// Opens the live channel, or says once why progress will come from polling.
pub async fn open_socket(api: &Api, ui: &Ui, disabled: bool) -> Option<UnboundedReceiver<Event>> {
    if disabled {
        ui.note("Live updates off (--no-socket): polling the server for progress.");
        return None;
    }
    let token = api.token()?;
    match socket::connect(api.base(), token).await {
        Ok(rx) => Some(rx),
        Err(e) => {
            ui.note(format!("Live updates unavailable ({e}): polling the server for progress instead."));
            None
        }
    }
}

/// A progress area on stderr: bars on a terminal, hidden otherwise.
pub fn progress_area(ui: &Ui) -> MultiProgress {
    if ui.bars {
        MultiProgress::with_draw_target(ProgressDrawTarget::stderr())
    } else {
        MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Queued,
    Analyzing(u64),
    Retrying(u64, String),
    Completed(String, f64),
    Failed(String),
    Cancelled,
}

impl Phase {
    fn terminal(&self) -> bool {
        matches!(self, Phase::Completed(..) | Phase::Failed(_) | Phase::Cancelled)
    }

    fn text(&self) -> String {
        match self {
            Phase::Queued => "queued".into(),
            Phase::Analyzing(a) if *a > 1 => format!("analysing (attempt {a})"),
            Phase::Analyzing(_) => "analysing".into(),
            Phase::Retrying(a, e) => format!("retrying after attempt {a}: {e}"),
            Phase::Completed(p, c) => format!("{p} {}", percent(*c)),
            Phase::Failed(e) => format!("FAILED: {e}"),
            Phase::Cancelled => "cancelled".into(),
        }
    }
}

struct Item {
    target: Target,
    status: String,
    models: BTreeMap<String, (Phase, u64)>,
    last: Option<Media>,
    done: Option<(Media, Option<Run>)>,
    header: ProgressBar,
    bars: BTreeMap<String, ProgressBar>,
}

pub struct Tracker<'a> {
    api: &'a Api,
    ui: &'a Ui,
    multi: MultiProgress,
    items: Vec<Item>,
}

fn header_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner:.cyan} {prefix:.bold} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .tick_strings(&["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏", "•"])
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("    {prefix:<26} [{bar:30.cyan/blue}] {pos:>3}% {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl<'a> Tracker<'a> {
    pub fn new(api: &'a Api, ui: &'a Ui, multi: MultiProgress) -> Self {
        Self { api, ui, multi, items: Vec::new() }
    }

    pub fn add(&mut self, target: Target) {
        let header = self.multi.add(ProgressBar::new_spinner().with_style(header_style()));
        header.set_prefix(target.filename.clone());
        header.set_message("waiting for the server");
        if self.ui.bars {
            header.enable_steady_tick(Duration::from_millis(120));
        }
        self.items.push(Item {
            target,
            status: "QUEUED".into(),
            models: BTreeMap::new(),
            last: None,
            done: None,
            header,
            bars: BTreeMap::new(),
        });
    }

    /// Follows every added run until all are terminal (or Ctrl-C).
    pub async fn run(mut self, mut socket: Option<UnboundedReceiver<Event>>) -> Result<Outcome, CliError> {
        let mut interval = if socket.is_some() { SAFETY_POLL } else { POLL_MIN };
        let mut next_poll = Instant::now();
        let mut unreachable_since: Option<Instant> = None;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        while self.items.iter().any(|i| i.done.is_none()) {
            tokio::select! {
                ev = async { socket.as_mut()?.recv().await }, if socket.is_some() => match ev {
                    Some(ev) => {
                        if let Some(refresh) = self.on_event(&ev) {
                            self.refresh(refresh).await.ok();
                        }
                    }
                    None => {
                        socket = None;
                        interval = POLL_MIN;
                        self.println("Live updates lost: polling the server for progress instead.");
                    }
                },
                _ = tokio::time::sleep_until(next_poll) => {
                    let mut changed = false;
                    let mut failed = None;
                    for i in 0..self.items.len() {
                        if self.items[i].done.is_some() {
                            continue;
                        }
                        match self.refresh(i).await {
                            Ok(c) => changed |= c,
                            // No answer, or a server in trouble: keep trying for a while.
                            Err(e) if e.status.is_none_or(|s| s >= 500 || s == 429) => failed = Some(e),
                            Err(e) => return Err(e),
                        }
                    }
                    match failed {
                        Some(e) => {
                            let since = *unreachable_since.get_or_insert_with(Instant::now);
                            if since.elapsed() > UNREACHABLE_LIMIT {
                                self.clear();
                                return Err(e);
                            }
                        }
                        None => unreachable_since = None,
                    }
                    interval = match (&socket, changed) {
                        (Some(_), _) => SAFETY_POLL,
                        (None, true) => POLL_MIN,
                        (None, false) => (interval * 2).min(POLL_MAX),
                    };
                    next_poll = Instant::now() + interval;
                },
                _ = &mut ctrl_c => {
                    // The table then shows where the server is, not the last poll.
                    for i in 0..self.items.len() {
                        if self.items[i].done.is_none() {
                            let _ = tokio::time::timeout(Duration::from_secs(3), self.refresh(i)).await;
                        }
                    }
                    self.clear();
                    self.ui.note("Stopped watching; the analyses go on on the server. `drishtiksha watch` re-attaches.");
                    return Ok(self.outcome(true));
                }
            }
        }
        Ok(self.outcome(false))
    }

    fn outcome(self, interrupted: bool) -> Outcome {
        let results = self
            .items
            .into_iter()
            .map(|i| match i.done {
                Some(d) => d,
                None => match i.last {
                    Some(m) => {
                        let run = m.run(i.target.run_id.as_deref()).cloned();
                        (m, run)
                    }
                    None => (placeholder(&i.target, &i.status), None),
                },
            })
            .collect();
        Outcome { results, interrupted }
    }

    fn clear(&self) {
        for i in &self.items {
            for b in i.bars.values() {
                b.abandon();
            }
            i.header.abandon();
        }
    }

    fn println(&self, msg: &str) {
        if self.ui.bars {
            let _ = self.multi.println(msg);
        } else {
            self.ui.note(msg);
        }
    }

    /// Re-reads one media; whether anything changed.
    async fn refresh(&mut self, idx: usize) -> Result<bool, CliError> {
        let id = self.items[idx].target.media_id.clone();
        match self.api.get::<Media>(&format!("/api/v1/media/{id}")).await {
            Ok(media) => Ok(self.sync(idx, media)),
            Err(e) if e.status == Some(404) => {
                let item = &mut self.items[idx];
                let mut gone = item.last.clone().unwrap_or_else(|| placeholder(&item.target, "DELETED"));
                gone.status = "DELETED".into();
                item.status = "DELETED".into();
                let line = format!("{}: deleted on the server", item.target.filename);
                item.header.finish_with_message("deleted on the server");
                item.done = Some((gone, None));
                if !self.ui.bars {
                    self.ui.note(line);
                }
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    fn sync(&mut self, idx: usize, media: Media) -> bool {
        let run = media.run(self.items[idx].target.run_id.as_deref()).cloned();
        let mut changed = false;
        if let Some(run) = &run {
            self.items[idx].target.run_id.get_or_insert_with(|| run.id.clone());
            for a in &run.analyses {
                let phase = match a.status.as_str() {
                    "COMPLETED" => Phase::Completed(a.prediction.clone(), a.confidence),
                    "FAILED" => Phase::Failed(a.error_message.clone().unwrap_or_else(|| "failed".into())),
                    "CANCELLED" => Phase::Cancelled,
                    "RUNNING" => Phase::Analyzing(1),
                    _ => Phase::Queued,
                };
                changed |= self.set_model(idx, &a.model_name, phase, None);
            }
            changed |= self.set_status(idx, &run.status, run.error_message.as_deref());
        } else {
            changed |= self.set_status(idx, &media.status, None);
        }
        let item = &mut self.items[idx];
        if is_terminal(&item.status) {
            let summary = match &run {
                Some(r) => format!("{} · {}", r.status, verdict(r)),
                None => item.status.clone(),
            };
            let line = format!("{}: {summary}", item.target.filename);
            item.header.finish_with_message(summary);
            for b in item.bars.values() {
                if !b.is_finished() {
                    b.abandon();
                }
            }
            item.done = Some((media, run));
            if !self.ui.bars {
                self.ui.note(line);
            }
            return true;
        }
        item.last = Some(media);
        changed
    }

    fn set_status(&mut self, idx: usize, status: &str, error: Option<&str>) -> bool {
        let item = &mut self.items[idx];
        let changed = item.status != status;
        item.status = status.to_string();
        let total = item.models.len();
        let done = item.models.values().filter(|(p, _)| p.terminal()).count();
        let msg = match (status, total) {
            (_, _) if is_terminal(status) => return changed,
            ("QUEUED", 0) => "queued: probing the file and choosing models".to_string(),
            (_, 0) => status.to_lowercase(),
            (s, t) => format!("{} · {done}/{t} models done", s.to_lowercase().replace('_', " ")),
        };
        let msg = match error {
            Some(e) => format!("{msg} ({e})"),
            None => msg,
        };
        item.header.set_message(msg);
        changed
    }

    /// Moves a model forward (never back from a final phase); whether anything changed.
    fn set_model(&mut self, idx: usize, model: &str, phase: Phase, progress: Option<u64>) -> bool {
        let ui = *self.ui;
        let multi = self.multi.clone();
        let item = &mut self.items[idx];
        let (old_phase, old_progress) = item.models.get(model).cloned().unwrap_or((Phase::Queued, 0));
        let known = item.models.contains_key(model);
        if known && old_phase.terminal() {
            return false;
        }
        let phase = match (&old_phase, phase) {
            // A refresh only knows RUNNING/PENDING: keep what the events said about attempts.
            (Phase::Analyzing(a), Phase::Analyzing(1)) => Phase::Analyzing(*a),
            (Phase::Analyzing(_) | Phase::Retrying(..), Phase::Queued) => old_phase.clone(),
            (_, p) => p,
        };
        let progress = match &phase {
            Phase::Completed(..) => 100,
            _ => progress.unwrap_or(old_progress).max(old_progress).min(100),
        };
        if known && phase == old_phase && progress == old_progress {
            return false;
        }
        item.models.insert(model.to_string(), (phase.clone(), progress));
        let filename = item.target.filename.clone();
        let bar = match item.bars.get(model) {
            Some(b) => b.clone(),
            None => {
                // Bars stay in name order under their file's line.
                let after = item.bars.range(..model.to_string()).next_back().map(|(_, b)| b.clone());
                let bar = ProgressBar::new(100).with_style(bar_style());
                let bar = match after {
                    Some(a) => multi.insert_after(&a, bar),
                    None => multi.insert_after(&item.header, bar),
                };
                bar.set_prefix(model.to_string());
                item.bars.insert(model.to_string(), bar.clone());
                bar
            }
        };
        bar.set_position(progress);
        match &phase {
            Phase::Completed(..) => bar.finish_with_message(phase.text()),
            Phase::Failed(_) | Phase::Cancelled => bar.abandon_with_message(phase.text()),
            _ => bar.set_message(phase.text()),
        }
        if !ui.bars && phase != old_phase && !matches!(phase, Phase::Queued) {
            ui.note(format!("{filename}: {model} {}", phase.text()));
        }
        true
    }

    /// Applies one event; the index of an item to re-read now, if any.
    fn on_event(&mut self, ev: &Event) -> Option<usize> {
        let p = &ev.payload;
        let media_id = if ev.name == "media_update" { p["id"].as_str() } else { p["mediaId"].as_str() }?;
        let idx = self.items.iter().position(|i| i.target.media_id == media_id && i.done.is_none())?;
        let run_of = |v: &Value| v.as_str().map(str::to_string);
        let run = match ev.name.as_str() {
            "progress_update" => run_of(&p["data"]["runId"]),
            "media_update" => None,
            _ => run_of(&p["analysisRunId"]),
        };
        if let (Some(mine), Some(theirs)) = (&self.items[idx].target.run_id, &run)
            && mine != theirs
        {
            return None;
        }
        let model = p["modelName"].as_str().unwrap_or_default().to_string();
        match ev.name.as_str() {
            "analysis_started" => {
                self.set_model(idx, &model, Phase::Analyzing(p["attempt"].as_u64().unwrap_or(1)), None);
                let status = if self.items[idx].status == "QUEUED" {
                    "PROCESSING".to_string()
                } else {
                    self.items[idx].status.clone()
                };
                self.set_status(idx, &status, None);
            }
            "analysis_progress" => {
                let phase = match self.items[idx].models.get(&model) {
                    Some((p @ (Phase::Analyzing(_) | Phase::Retrying(..)), _)) => p.clone(),
                    _ => Phase::Analyzing(1),
                };
                self.set_model(idx, &model, phase, p["progress"].as_u64());
            }
            "analysis_completed" => {
                let phase = Phase::Completed(
                    p["prediction"].as_str().unwrap_or("?").to_string(),
                    p["confidence"].as_f64().unwrap_or(0.0),
                );
                self.set_model(idx, &model, phase, Some(100));
                let status = self.items[idx].status.clone();
                self.set_status(idx, &status, None);
            }
            "analysis_failed" => {
                self.set_model(idx, &model, Phase::Failed(p["error"].as_str().unwrap_or("failed").to_string()), None);
                let status = self.items[idx].status.clone();
                self.set_status(idx, &status, None);
            }
            "progress_update" => {
                let data = &p["data"];
                let model = data["model_name"].as_str().unwrap_or_default();
                match p["event"].as_str() {
                    Some("ANALYSIS_QUEUED") if run.is_some() => {
                        self.set_model(idx, model, Phase::Queued, None);
                        let status = if self.items[idx].status == "QUEUED" {
                            "PROCESSING".to_string()
                        } else {
                            self.items[idx].status.clone()
                        };
                        self.set_status(idx, &status, None);
                    }
                    Some("ANALYSIS_RETRYING") if run.is_some() => {
                        let phase = Phase::Retrying(
                            data["attempt"].as_u64().unwrap_or(1),
                            data["error_message"].as_str().unwrap_or("failed").to_string(),
                        );
                        self.set_model(idx, model, phase, None);
                    }
                    _ => {}
                }
            }
            "run_finalized" => return Some(idx),
            "media_update" => {
                if let Ok(media) = serde_json::from_value::<Media>(p.clone()) {
                    self.sync(idx, media);
                }
            }
            _ => {}
        }
        None
    }
}

fn placeholder(target: &Target, status: &str) -> Media {
    Media {
        id: target.media_id.clone(),
        filename: target.filename.clone(),
        media_type: String::new(),
        size: 0,
        status: status.to_string(),
        created_at: String::new(),
        latest_analysis_run_id: target.run_id.clone(),
        analysis_runs: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use url::Url;

    fn ui() -> Ui {
        Ui { color_out: false, color_err: false, bars: false, quiet: true }
    }

    fn ev(name: &str, payload: Value) -> Event {
        Event { name: name.into(), payload }
    }

    fn tracker<'a>(api: &'a Api, ui: &'a Ui) -> Tracker<'a> {
        let mut t = Tracker::new(api, ui, MultiProgress::with_draw_target(ProgressDrawTarget::hidden()));
        t.add(Target { media_id: "m".into(), filename: "clip.mp4".into(), run_id: Some("r2".into()) });
        t
    }

    fn model(t: &Tracker<'_>, name: &str) -> (Phase, u64) {
        t.items[0].models.get(name).cloned().expect("model")
    }

    #[test]
    fn events_of_another_run_or_media_are_ignored() {
        let (api, ui) = (Api::new(Url::parse("http://127.0.0.1:9").expect("url"), None).expect("api"), ui());
        let mut t = tracker(&api, &ui);
        t.on_event(&ev(
            "analysis_started",
            json!({"mediaId": "m", "analysisRunId": "r1", "modelName": "A", "attempt": 1}),
        ));
        t.on_event(&ev(
            "analysis_started",
            json!({"mediaId": "x", "analysisRunId": "r2", "modelName": "A", "attempt": 1}),
        ));
        assert!(t.items[0].models.is_empty());
        t.on_event(&ev(
            "analysis_started",
            json!({"mediaId": "m", "analysisRunId": "r2", "modelName": "A", "attempt": 2}),
        ));
        assert_eq!(model(&t, "A").0, Phase::Analyzing(2));
        assert_eq!(t.items[0].status, "PROCESSING");
    }

    #[test]
    fn progress_only_moves_forward_and_a_finished_model_stays_finished() {
        let (api, ui) = (Api::new(Url::parse("http://127.0.0.1:9").expect("url"), None).expect("api"), ui());
        let mut t = tracker(&api, &ui);
        let progress = |p: u64| {
            ev("analysis_progress", json!({"mediaId": "m", "analysisRunId": "r2", "modelName": "A", "progress": p}))
        };
        t.on_event(&progress(60));
        t.on_event(&progress(20));
        assert_eq!(model(&t, "A"), (Phase::Analyzing(1), 60));
        let done =
            json!({"mediaId": "m", "analysisRunId": "r2", "modelName": "A", "prediction": "FAKE", "confidence": 0.9});
        t.on_event(&ev("analysis_completed", done));
        // Late or repeated events (delivery is at-least-once) change nothing.
        t.on_event(&ev(
            "analysis_started",
            json!({"mediaId": "m", "analysisRunId": "r2", "modelName": "A", "attempt": 1}),
        ));
        t.on_event(&progress(70));
        assert_eq!(model(&t, "A"), (Phase::Completed("FAKE".into(), 0.9), 100));
    }

    #[test]
    fn a_final_media_update_ends_the_item_with_its_run() {
        let (api, ui) = (Api::new(Url::parse("http://127.0.0.1:9").expect("url"), None).expect("api"), ui());
        let mut t = tracker(&api, &ui);
        let media = json!({
            "id": "m", "filename": "clip.mp4", "mediaType": "VIDEO", "size": 1, "status": "ANALYZED",
            "createdAt": "", "latestAnalysisRunId": "r2",
            "analysisRuns": [{
                "id": "r2", "runNumber": 2, "status": "ANALYZED", "totalModels": 1, "completedCount": 0,
                "failedCount": 1, "errorMessage": null, "createdAt": "",
                "analyses": [{"modelName": "A", "status": "FAILED", "prediction": "N/A", "confidence": 0,
                              "errorMessage": "boom", "processingTime": null, "resultPayload": null}]
            }]
        });
        assert_eq!(t.on_event(&ev("run_finalized", json!({"mediaId": "m", "analysisRunId": "r2"}))), Some(0));
        t.on_event(&ev("media_update", media));
        assert_eq!(model(&t, "A").0, Phase::Failed("boom".into()));
        let (m, run) = t.items[0].done.clone().expect("done");
        assert_eq!((m.status.as_str(), run.map(|r| r.id)), ("ANALYZED", Some("r2".to_string())));
    }
}
