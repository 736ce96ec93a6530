//! Failure modes (§9.7) and the markers the stand-in looks for in uploaded bytes.

use std::fmt;
use std::str::FromStr;

/// What a failure trigger makes an `/analyze` call do instead of succeeding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureMode {
    /// 422 Media Processing Error.
    MediaProcessing,
    /// 500 Internal Server Error (object `detail`).
    Internal,
    /// 500 Inference Error, fallbacks exhausted.
    Inference,
    /// 429 with `Retry-After: 1`.
    RateLimited,
    /// 200 with the result of another model, as after a server-side fallback.
    Fallback,
    /// Never answers; holds the connection until the client gives up.
    Hang,
    /// Reads the request, then closes the connection without a response.
    Drop,
    /// The first `n` calls per (file hash, model) answer 500, later calls succeed. Marker only.
    Flaky(u32),
}

impl FailureMode {
    /// Whether the mode may be used outside a marker (catalogue `fail`, `--fail-modes`).
    pub fn allowed_outside_markers(self) -> bool {
        !matches!(self, Self::Flaky(_))
    }
}

impl fmt::Display for FailureMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MediaProcessing => f.write_str("422"),
            Self::Internal => f.write_str("500"),
            Self::Inference => f.write_str("inference"),
            Self::RateLimited => f.write_str("429"),
            Self::Fallback => f.write_str("fallback"),
            Self::Hang => f.write_str("hang"),
            Self::Drop => f.write_str("drop"),
            Self::Flaky(n) => write!(f, "flaky-{n}"),
        }
    }
}

/// A string that names no failure mode.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown failure mode '{0}' (expected 422, 500, inference, fallback, 429, hang, drop or flaky-<n>)")]
pub struct UnknownFailureMode(pub String);

impl FromStr for FailureMode {
    type Err = UnknownFailureMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let mode = match lower.as_str() {
            "422" => Self::MediaProcessing,
            "500" => Self::Internal,
            "inference" => Self::Inference,
            "429" => Self::RateLimited,
            "fallback" => Self::Fallback,
            "hang" => Self::Hang,
            "drop" => Self::Drop,
            other => other
                .strip_prefix("flaky-")
                .and_then(|n| n.parse::<u32>().ok())
                .map(Self::Flaky)
                .ok_or_else(|| UnknownFailureMode(s.to_owned()))?,
        };
        Ok(mode)
    }
}

/// Parses a comma-separated list of modes (`--fail-modes`); `flaky-<n>` is rejected there.
pub fn parse_mode_list(s: &str) -> Result<Vec<FailureMode>, UnknownFailureMode> {
    let modes = s
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| {
            let mode = m.parse::<FailureMode>()?;
            if mode.allowed_outside_markers() {
                Ok(mode)
            } else {
                Err(UnknownFailureMode(format!("{m} (flaky-<n> is a marker-only mode)")))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    if modes.is_empty() {
        return Err(UnknownFailureMode(s.to_owned()));
    }
    Ok(modes)
}

/// A simulated verdict forced by a `STANDIN:fake` / `STANDIN:real` marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Fake,
    Real,
}

/// What a marker asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerKind {
    Verdict(Verdict),
    Failure(FailureMode),
}

/// One `STANDIN:<mode>[@<MODEL>]` marker found in an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub kind: MarkerKind,
    /// Model the marker is scoped to, if any (compared case-insensitively).
    pub model: Option<String>,
}

impl Marker {
    /// Parses the text after `STANDIN:`; `None` when it names nothing the stand-in knows.
    pub fn parse(token: &str) -> Option<Self> {
        let (mode, model) = match token.split_once('@') {
            Some((mode, model)) => (mode, Some(model.trim_end_matches('.'))),
            None => (token.trim_end_matches('.'), None),
        };
        let kind = match mode.to_ascii_lowercase().as_str() {
            "fake" => MarkerKind::Verdict(Verdict::Fake),
            "real" => MarkerKind::Verdict(Verdict::Real),
            other => MarkerKind::Failure(other.parse().ok()?),
        };
        let model = match model {
            Some("") => return None,
            Some(m) => Some(m.to_owned()),
            None => None,
        };
        Some(Self { kind, model })
    }

    fn applies_to(&self, model: &str) -> bool {
        self.model.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(model))
    }
}

/// Picks the marker of the wanted kind for `model`: a marker scoped to the model wins over an
/// unscoped one; among equals the first in the file wins.
fn pick<T>(markers: &[Marker], model: &str, f: impl Fn(&MarkerKind) -> Option<T>) -> Option<T> {
    let applicable = || markers.iter().filter(|m| m.applies_to(model));
    applicable()
        .filter(|m| m.model.is_some())
        .find_map(|m| f(&m.kind))
        .or_else(|| applicable().filter(|m| m.model.is_none()).find_map(|m| f(&m.kind)))
}

/// The verdict markers force for `model`, if any.
pub fn verdict_for(markers: &[Marker], model: &str) -> Option<Verdict> {
    pick(markers, model, |k| match k {
        MarkerKind::Verdict(v) => Some(*v),
        MarkerKind::Failure(_) => None,
    })
}

/// The failure mode markers ask of `model`, if any.
pub fn failure_for(markers: &[Marker], model: &str) -> Option<FailureMode> {
    pick(markers, model, |k| match k {
        MarkerKind::Failure(m) => Some(*m),
        MarkerKind::Verdict(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_case_insensitively_and_print_canonically() {
        for (text, mode) in [
            ("422", FailureMode::MediaProcessing),
            ("500", FailureMode::Internal),
            ("Inference", FailureMode::Inference),
            ("429", FailureMode::RateLimited),
            ("Fallback", FailureMode::Fallback),
            ("HANG", FailureMode::Hang),
            ("drop", FailureMode::Drop),
            ("FLAKY-2", FailureMode::Flaky(2)),
        ] {
            let parsed: FailureMode = text.parse().expect("valid mode");
            assert_eq!(parsed, mode);
            assert_eq!(parsed.to_string(), text.to_ascii_lowercase());
        }
        assert!("flaky-".parse::<FailureMode>().is_err());
        assert!("404".parse::<FailureMode>().is_err());
    }

    #[test]
    fn mode_lists_reject_flaky_and_unknown_modes() {
        assert_eq!(
            parse_mode_list("500, 429,hang,fallback").expect("valid list"),
            vec![FailureMode::Internal, FailureMode::RateLimited, FailureMode::Hang, FailureMode::Fallback]
        );
        assert!(parse_mode_list("flaky-2").is_err());
        assert!(parse_mode_list("500,teapot").is_err());
        assert!(parse_mode_list("").is_err());
    }

    #[test]
    fn model_scoped_markers_win_over_unscoped_ones() {
        let markers = vec![
            Marker::parse("real").expect("marker"),
            Marker::parse("fake@siglip-lstm-v4").expect("marker"),
            Marker::parse("500").expect("marker"),
            Marker::parse("hang@OTHER").expect("marker"),
        ];
        assert_eq!(verdict_for(&markers, "SIGLIP-LSTM-V4"), Some(Verdict::Fake));
        assert_eq!(verdict_for(&markers, "OTHER"), Some(Verdict::Real));
        assert_eq!(failure_for(&markers, "OTHER"), Some(FailureMode::Hang));
        assert_eq!(failure_for(&markers, "SIGLIP-LSTM-V4"), Some(FailureMode::Internal));
    }

    #[test]
    fn marker_tokens_naming_nothing_known_are_ignored() {
        assert!(Marker::parse("teapot").is_none());
        assert!(Marker::parse("fake@").is_none());
        assert_eq!(Marker::parse("fake.").map(|m| m.kind), Some(MarkerKind::Verdict(Verdict::Fake)));
    }
}
