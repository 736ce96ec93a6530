//! The API's objects (`docs/contract.md` §3), only the fields the command line reads.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub role: String,
}

#[derive(Debug, Deserialize)]
pub struct Login {
    pub token: String,
    pub user: User,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Media {
    pub id: String,
    pub filename: String,
    pub media_type: String,
    pub size: u64,
    pub status: String,
    pub created_at: String,
    pub latest_analysis_run_id: Option<String>,
    #[serde(default)]
    pub analysis_runs: Vec<Run>,
}

impl Media {
    /// The run with `id`, or the latest one.
    pub fn run(&self, id: Option<&str>) -> Option<&Run> {
        match id {
            Some(id) => self.analysis_runs.iter().find(|r| r.id == id),
            None => self.analysis_runs.first(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub id: String,
    pub run_number: i64,
    pub status: String,
    pub total_models: i64,
    pub completed_count: i64,
    pub failed_count: i64,
    pub error_message: Option<String>,
    pub created_at: String,
    #[serde(default)]
    pub analyses: Vec<Analysis>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    pub model_name: String,
    pub status: String,
    pub prediction: String,
    pub confidence: f64,
    pub error_message: Option<String>,
    pub processing_time: Option<f64>,
    pub result_payload: Option<Value>,
}

impl Analysis {
    /// The ML server's `model_used`, when it reported one.
    pub fn model_used(&self) -> Option<&str> {
        self.result_payload.as_ref().and_then(|p| p["model_used"].as_str())
    }
}

pub fn is_terminal(status: &str) -> bool {
    matches!(status, "ANALYZED" | "FAILED" | "CANCELLED")
}

/// The verdict of a run by the report's rule (`docs/contract.md` §4.5): only completed models count.
pub fn verdict(run: &Run) -> &'static str {
    let done = run.analyses.iter().filter(|a| a.status == "COMPLETED");
    let (fake, real) = done.fold((0, 0), |(f, r), a| match a.prediction.as_str() {
        "FAKE" => (f + 1, r),
        "REAL" => (f, r + 1),
        _ => (f, r),
    });
    match (fake, real) {
        (0, 0) => "INCONCLUSIVE",
        (f, r) if f > r => "DEEPFAKE",
        _ => "AUTHENTIC",
    }
}

/// A run every model of which completed: what exit status 0 promises.
pub fn fully_analysed(run: &Run) -> bool {
    run.status == "ANALYZED" && run.analyses.iter().all(|a| a.status == "COMPLETED")
}

/// One file's outcome as `--json` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultJson {
    pub media_id: String,
    pub filename: String,
    pub media_type: String,
    pub run_id: Option<String>,
    pub run_number: Option<i64>,
    pub status: String,
    pub verdict: &'static str,
    pub error_message: Option<String>,
    pub analyses: Vec<AnalysisJson>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisJson {
    pub model: String,
    pub model_used: Option<String>,
    pub status: String,
    pub prediction: Option<String>,
    pub confidence: Option<f64>,
    pub processing_time: Option<f64>,
    pub error: Option<String>,
}

impl ResultJson {
    pub fn new(media: &Media, run: Option<&Run>) -> Self {
        Self {
            media_id: media.id.clone(),
            filename: media.filename.clone(),
            media_type: media.media_type.clone(),
            run_id: run.map(|r| r.id.clone()),
            run_number: run.map(|r| r.run_number),
            status: run.map_or_else(|| media.status.clone(), |r| r.status.clone()),
            verdict: run.map_or("INCONCLUSIVE", verdict),
            error_message: run.and_then(|r| r.error_message.clone()),
            analyses: run
                .map(|r| {
                    r.analyses
                        .iter()
                        .map(|a| {
                            let done = a.status == "COMPLETED";
                            AnalysisJson {
                                model: a.model_name.clone(),
                                model_used: a.model_used().map(str::to_string),
                                status: a.status.clone(),
                                prediction: done.then(|| a.prediction.clone()),
                                confidence: done.then_some(a.confidence),
                                processing_time: a.processing_time,
                                error: a.error_message.clone(),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analysis(status: &str, prediction: &str) -> Analysis {
        Analysis {
            model_name: "M".into(),
            status: status.into(),
            prediction: prediction.into(),
            confidence: 0.9,
            error_message: None,
            processing_time: None,
            result_payload: None,
        }
    }

    fn run(status: &str, analyses: Vec<Analysis>) -> Run {
        Run {
            id: "r".into(),
            run_number: 1,
            status: status.into(),
            total_models: analyses.len() as i64,
            completed_count: 0,
            failed_count: 0,
            error_message: None,
            created_at: String::new(),
            analyses,
        }
    }

    #[test]
    fn the_verdict_counts_only_completed_models_and_ties_are_authentic() {
        let r = run("ANALYZED", vec![analysis("COMPLETED", "FAKE"), analysis("COMPLETED", "REAL")]);
        assert_eq!(verdict(&r), "AUTHENTIC");
        let r = run("ANALYZED", vec![analysis("COMPLETED", "FAKE"), analysis("FAILED", "N/A")]);
        assert_eq!(verdict(&r), "DEEPFAKE");
        assert_eq!(verdict(&run("FAILED", vec![analysis("FAILED", "N/A")])), "INCONCLUSIVE");
    }

    #[test]
    fn a_run_with_a_failed_model_is_not_fully_analysed() {
        assert!(fully_analysed(&run("ANALYZED", vec![analysis("COMPLETED", "FAKE")])));
        assert!(!fully_analysed(&run("ANALYZED", vec![analysis("COMPLETED", "FAKE"), analysis("FAILED", "N/A")])));
        assert!(!fully_analysed(&run("CANCELLED", vec![])));
    }
}
