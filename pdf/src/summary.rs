//! The values a report derives from a run (`docs/contract.md` §4.5): counts over the COMPLETED analyses, the
//! verdict, the risk level, and the download's file name.

use chrono::{DateTime, Utc};

use drishtiksha_common::db::media::Analysis;
use drishtiksha_common::model::AnalysisStatus;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    Deepfake,
    Authentic,
    Inconclusive,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Self::Deepfake => "DEEPFAKE",
            Self::Authentic => "AUTHENTIC",
            Self::Inconclusive => "INCONCLUSIVE",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Risk {
    Unknown,
    Low,
    Medium,
    High,
}

impl Risk {
    pub fn label(self) -> &'static str {
        match self {
            Self::Unknown => "UNKNOWN",
            Self::Low => "LOW",
            Self::Medium => "MEDIUM",
            Self::High => "HIGH",
        }
    }
}

/// Aggregates over a run's analyses; confidences and times only from COMPLETED ones.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub completed: usize,
    /// Models that really answered (a fallback answer filed under two models counts once).
    pub voters: usize,
    pub failed: usize,
    pub fake: usize,
    pub real: usize,
    pub average_confidence: Option<f64>,
    pub highest_confidence: Option<f64>,
    pub lowest_confidence: Option<f64>,
    pub average_processing_time: Option<f64>,
}

impl Summary {
    pub fn of(analyses: &[Analysis]) -> Self {
        let completed: Vec<&Analysis> = analyses.iter().filter(|a| a.status == AnalysisStatus::Completed).collect();
        let confidences: Vec<f64> = completed.iter().map(|a| a.confidence).collect();
        let times: Vec<f64> = completed.iter().filter_map(|a| a.processing_time).collect();
        // A server-side fallback files model B's answer under the requested model A: the verdict
        // counts each model that really answered once.
        let mut voters: Vec<&str> = Vec::new();
        let votes: Vec<&&Analysis> = completed
            .iter()
            .filter(|a| {
                let who = a.model_used.as_deref().unwrap_or(&a.model_name);
                let first = !voters.contains(&who);
                voters.push(who);
                first
            })
            .collect();
        Self {
            completed: completed.len(),
            voters: votes.len(),
            failed: analyses.iter().filter(|a| a.status == AnalysisStatus::Failed).count(),
            fake: votes.iter().filter(|a| a.prediction.eq_ignore_ascii_case("FAKE")).count(),
            real: votes.iter().filter(|a| a.prediction.eq_ignore_ascii_case("REAL")).count(),
            average_confidence: mean(&confidences),
            highest_confidence: confidences.iter().copied().reduce(f64::max),
            lowest_confidence: confidences.iter().copied().reduce(f64::min),
            average_processing_time: mean(&times),
        }
    }

    pub fn verdict(&self) -> Verdict {
        verdict(self.completed, self.fake, self.real)
    }

    pub fn risk(&self) -> Risk {
        risk(self.voters, self.fake, self.average_confidence.unwrap_or(0.0))
    }
}

pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// `DEEPFAKE` if more models said FAKE than REAL, else `AUTHENTIC`; `INCONCLUSIVE` without any
/// completed model.
pub fn verdict(completed: usize, fake: usize, real: usize) -> Verdict {
    if completed == 0 {
        Verdict::Inconclusive
    } else if fake > real {
        Verdict::Deepfake
    } else {
        Verdict::Authentic
    }
}

/// No model answered → UNKNOWN; no FAKE → LOW; ≥ 60 % FAKE with average confidence above 0.7 →
/// HIGH; ≥ 40 % FAKE → MEDIUM; else LOW. The share is of the models that answered.
pub fn risk(voters: usize, fake: usize, average_confidence: f64) -> Risk {
    if voters == 0 {
        return Risk::Unknown;
    }
    if fake == 0 {
        return Risk::Low;
    }
    let share = fake as f64 / voters as f64;
    if share >= 0.6 && average_confidence > 0.7 {
        Risk::High
    } else if share >= 0.4 {
        Risk::Medium
    } else {
        Risk::Low
    }
}

/// `Analysis_Report_<name>_<YYYY-MM-DD>.pdf`: the media file name without its last extension,
/// every character outside `[A-Za-z0-9]` replaced by `_`, cut to 30 characters; the date is the
/// generation date (UTC).
pub fn report_filename(media_filename: &str, generated_at: DateTime<Utc>) -> String {
    let stem = match media_filename.rfind('.') {
        Some(dot) if dot > 0 => &media_filename[..dot],
        _ => media_filename,
    };
    let name: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).take(30).collect();
    format!("Analysis_Report_{name}_{}.pdf", generated_at.format("%Y-%m-%d"))
}

/// `RPT-<epoch ms>` of the generation time.
pub fn report_id(generated_at: DateTime<Utc>) -> String {
    format!("RPT-{}", generated_at.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use uuid::Uuid;

    use super::*;

    fn analysis(status: AnalysisStatus, prediction: &str, confidence: f64, time: Option<f64>) -> Analysis {
        Analysis {
            id: Uuid::new_v4(),
            analysis_run_id: Uuid::nil(),
            model_name: Uuid::new_v4().to_string(),
            model_used: None,
            status,
            prediction: prediction.into(),
            confidence,
            error_message: None,
            processing_time: time,
            media_type: None,
            result_payload: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn a_fallback_answer_is_counted_once_with_the_model_that_gave_it() {
        let mut a = analysis(AnalysisStatus::Completed, "FAKE", 0.9, None);
        a.model_name = "A".into();
        a.model_used = Some("B".into());
        let mut b = analysis(AnalysisStatus::Completed, "FAKE", 0.9, None);
        b.model_name = "B".into();
        let mut c = analysis(AnalysisStatus::Completed, "REAL", 0.8, None);
        c.model_name = "C".into();
        let s = Summary::of(&[a, b, c]);
        assert_eq!((s.completed, s.voters, s.fake, s.real), (3, 2, 1, 1));
        // Risk is the share of FAKE among the models that answered: 1 of 2, not 1 of 3.
        assert_eq!(s.risk(), Risk::Medium);
    }

    #[test]
    fn verdict_is_inconclusive_without_a_completed_model() {
        assert_eq!(verdict(0, 0, 0), Verdict::Inconclusive);
    }

    #[test]
    fn verdict_is_deepfake_only_when_fake_outnumbers_real() {
        assert_eq!(verdict(3, 2, 1), Verdict::Deepfake);
        assert_eq!(verdict(2, 1, 1), Verdict::Authentic);
        assert_eq!(verdict(3, 0, 3), Verdict::Authentic);
    }

    #[test]
    fn risk_is_unknown_without_a_completed_model_and_low_without_a_fake() {
        assert_eq!(risk(0, 0, 0.0), Risk::Unknown);
        assert_eq!(risk(4, 0, 0.99), Risk::Low);
    }

    #[test]
    fn risk_is_high_from_sixty_percent_fake_with_confident_models() {
        assert_eq!(risk(5, 3, 0.71), Risk::High);
        assert_eq!(risk(5, 3, 0.7), Risk::Medium, "0.7 is not above 0.7");
        assert_eq!(risk(1, 1, 0.9), Risk::High);
    }

    #[test]
    fn risk_is_medium_from_forty_percent_fake_and_low_below() {
        assert_eq!(risk(5, 2, 0.95), Risk::Medium);
        assert_eq!(risk(10, 3, 0.95), Risk::Low);
    }

    #[test]
    fn summary_counts_only_completed_analyses() {
        let analyses = vec![
            analysis(AnalysisStatus::Completed, "FAKE", 0.9, Some(2.0)),
            analysis(AnalysisStatus::Completed, "REAL", 0.6, Some(4.0)),
            analysis(AnalysisStatus::Failed, "N/A", 0.0, None),
            analysis(AnalysisStatus::Running, "N/A", 0.0, None),
            analysis(AnalysisStatus::Cancelled, "N/A", 0.0, None),
        ];
        let s = Summary::of(&analyses);
        assert_eq!((s.completed, s.failed, s.fake, s.real), (2, 1, 1, 1));
        assert_eq!(s.average_confidence, Some(0.75));
        assert_eq!(s.highest_confidence, Some(0.9));
        assert_eq!(s.lowest_confidence, Some(0.6));
        assert_eq!(s.average_processing_time, Some(3.0));
        assert_eq!(s.verdict(), Verdict::Authentic);
        assert_eq!(s.risk(), Risk::Medium);
    }

    #[test]
    fn summary_of_a_run_without_results_is_inconclusive_with_unknown_risk() {
        let s = Summary::of(&[analysis(AnalysisStatus::Failed, "N/A", 0.0, None)]);
        assert_eq!(s.average_confidence, None);
        assert_eq!(s.verdict(), Verdict::Inconclusive);
        assert_eq!(s.risk(), Risk::Unknown);
    }

    #[test]
    fn filename_drops_the_last_extension_and_replaces_other_characters() {
        let at = Utc.with_ymd_and_hms(2025, 10, 12, 23, 59, 0).single().expect("valid date");
        assert_eq!(report_filename("my clip.final.mp4", at), "Analysis_Report_my_clip_final_2025-10-12.pdf");
        assert_eq!(report_filename("héllo-wörld.png", at), "Analysis_Report_h_llo_w_rld_2025-10-12.pdf");
        assert_eq!(report_filename("noext", at), "Analysis_Report_noext_2025-10-12.pdf");
        assert_eq!(report_filename(".hidden", at), "Analysis_Report__hidden_2025-10-12.pdf");
    }

    #[test]
    fn filename_name_is_cut_to_thirty_characters() {
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).single().expect("valid date");
        let long = format!("{}.mov", "a".repeat(45));
        assert_eq!(report_filename(&long, at), format!("Analysis_Report_{}_2026-01-02.pdf", "a".repeat(30)));
    }

    #[test]
    fn report_id_is_the_epoch_milliseconds() {
        let at = Utc.timestamp_millis_opt(1_760_240_509_123).single().expect("valid instant");
        assert_eq!(report_id(at), "RPT-1760240509123");
    }
}
