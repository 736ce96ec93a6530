//! Domain enums shared by the database, the REST contract and the workflow.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "user_role", rename_all = "UPPERCASE")]
#[serde(rename_all = "UPPERCASE")]
pub enum UserRole {
    User,
    Admin,
}

/// Status of an analysis run; media status mirrors the status of the media's latest run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "run_status", rename_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    Queued,
    Processing,
    PartiallyAnalyzed,
    Analyzed,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Analyzed | Self::Failed | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Processing => "PROCESSING",
            Self::PartiallyAnalyzed => "PARTIALLY_ANALYZED",
            Self::Analyzed => "ANALYZED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// The terminal status of a run that was not cancelled: ANALYZED once any model completed.
    pub fn final_for(completed: i64) -> Self {
        if completed > 0 { Self::Analyzed } else { Self::Failed }
    }

    /// The in-flight status while models are dispatched (§3.6): PARTIALLY_ANALYZED while some
    /// model completed and some is still pending or running. Once none is left the run keeps the
    /// status it has until it is finalized, so a run whose first completed model is also its last
    /// goes PROCESSING → ANALYZED.
    pub fn in_flight_for(completed: i64, unfinished: i64, current: Self) -> Self {
        match (completed > 0, unfinished > 0) {
            (true, true) => Self::PartiallyAnalyzed,
            (true, false) if current == Self::PartiallyAnalyzed => Self::PartiallyAnalyzed,
            _ => Self::Processing,
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "analysis_status", rename_all = "UPPERCASE")]
#[serde(rename_all = "UPPERCASE")]
pub enum AnalysisStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl AnalysisStatus {
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "media_type", rename_all = "UPPERCASE")]
#[serde(rename_all = "UPPERCASE")]
pub enum MediaType {
    Video,
    Image,
    Audio,
}

impl MediaType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Video => "VIDEO",
            Self::Image => "IMAGE",
            Self::Audio => "AUDIO",
        }
    }

    /// Folder of the storage key (`videos/<id>.mp4`).
    pub fn storage_folder(self) -> &'static str {
        match self {
            Self::Video => "videos",
            Self::Image => "images",
            Self::Audio => "audios",
        }
    }
}

impl std::fmt::Display for MediaType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One accepted upload type (§5.1 of the API contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptedType {
    pub canonical_mime: &'static str,
    pub extensions: &'static [&'static str],
    pub media_type: MediaType,
}

/// Looks up a declared MIME (lower-cased, parameters removed, `application/mp4` → `video/mp4`).
pub fn accepted_type(declared_mime: &str) -> Option<AcceptedType> {
    let mime = declared_mime.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let (canonical_mime, extensions, media_type): (&'static str, &'static [&'static str], MediaType) =
        match mime.as_str() {
            "video/mp4" | "application/mp4" => ("video/mp4", &[".mp4", ".m4v"], MediaType::Video),
            "video/webm" => ("video/webm", &[".webm"], MediaType::Video),
            "video/quicktime" => ("video/quicktime", &[".mov"], MediaType::Video),
            "video/x-msvideo" | "video/avi" => ("video/x-msvideo", &[".avi"], MediaType::Video),
            "video/x-matroska" => ("video/x-matroska", &[".mkv"], MediaType::Video),
            "image/jpeg" | "image/jpg" => ("image/jpeg", &[".jpg", ".jpeg"], MediaType::Image),
            "image/png" => ("image/png", &[".png"], MediaType::Image),
            "image/webp" => ("image/webp", &[".webp"], MediaType::Image),
            "image/gif" => ("image/gif", &[".gif"], MediaType::Image),
            "audio/mpeg" => ("audio/mpeg", &[".mp3", ".mpeg"], MediaType::Audio),
            "audio/mp3" => ("audio/mpeg", &[".mp3"], MediaType::Audio),
            "audio/wav" | "audio/x-wav" | "audio/wave" => ("audio/wav", &[".wav"], MediaType::Audio),
            "audio/ogg" => ("audio/ogg", &[".ogg"], MediaType::Audio),
            "audio/mp4" | "audio/x-m4a" => ("audio/mp4", &[".m4a"], MediaType::Audio),
            _ => return None,
        };
    Some(AcceptedType { canonical_mime, extensions, media_type })
}

/// Normalised declared MIME as it appears in error messages.
pub fn normalise_mime(declared_mime: &str) -> String {
    declared_mime.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// Lower-cased extension with its dot (`.mp4`), or `""` when the name has none.
pub fn extension_of(filename: &str) -> String {
    match filename.rfind('.') {
        Some(i) if i + 1 < filename.len() => filename[i..].to_ascii_lowercase(),
        _ => String::new(),
    }
}

/// Extension under which the ML server must receive a stored file (`docs/ml-server.md` §5): the server
/// only knows some extensions, so the others are renamed to a container its decoders read.
pub fn ml_part_extension(media_type: MediaType, stored_ext: &str) -> &'static str {
    match (media_type, stored_ext) {
        (MediaType::Video, ".mov") => ".mov",
        (MediaType::Video, ".avi") => ".avi",
        (MediaType::Video, ".webm") => ".webm",
        (MediaType::Video, _) => ".mp4",
        (MediaType::Audio, ".wav") => ".wav",
        (MediaType::Audio, _) => ".mp3",
        (MediaType::Image, ".jpg") => ".jpg",
        (MediaType::Image, ".jpeg") => ".jpeg",
        (MediaType::Image, ".gif") => ".gif",
        (MediaType::Image, _) => ".png",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_parameters_and_aliases_are_normalised() {
        let t = accepted_type("Application/MP4; codecs=avc1").expect("accepted");
        assert_eq!(t.canonical_mime, "video/mp4");
        assert_eq!(accepted_type("audio/mp3").map(|t| t.canonical_mime), Some("audio/mpeg"));
        assert!(accepted_type("text/plain").is_none());
        assert!(!accepted_type("audio/mp3").expect("accepted").extensions.contains(&".mpeg"));
    }

    #[test]
    fn extension_is_lower_cased_with_dot() {
        assert_eq!(extension_of("Clip.MP4"), ".mp4");
        assert_eq!(extension_of("noext"), "");
        assert_eq!(extension_of("trailing."), "");
    }

    #[test]
    fn ml_part_names_use_extensions_the_server_knows() {
        assert_eq!(ml_part_extension(MediaType::Video, ".mkv"), ".mp4");
        assert_eq!(ml_part_extension(MediaType::Video, ".m4v"), ".mp4");
        assert_eq!(ml_part_extension(MediaType::Video, ".mov"), ".mov");
        assert_eq!(ml_part_extension(MediaType::Audio, ".m4a"), ".mp3");
        assert_eq!(ml_part_extension(MediaType::Audio, ".wav"), ".wav");
        assert_eq!(ml_part_extension(MediaType::Image, ".webp"), ".png");
        assert_eq!(ml_part_extension(MediaType::Image, ".jpeg"), ".jpeg");
    }

    #[test]
    fn final_status_rule() {
        assert_eq!(RunStatus::final_for(0), RunStatus::Failed);
        assert_eq!(RunStatus::final_for(2), RunStatus::Analyzed);
        use RunStatus::{PartiallyAnalyzed, Processing, Queued};
        assert_eq!(RunStatus::in_flight_for(0, 3, Queued), Processing);
        assert_eq!(RunStatus::in_flight_for(1, 2, Processing), PartiallyAnalyzed);
        // The last model: a run whose only completed model is the last one stays PROCESSING…
        assert_eq!(RunStatus::in_flight_for(1, 0, Processing), Processing);
        // …one that already showed partial results keeps showing them until it is finalized.
        assert_eq!(RunStatus::in_flight_for(2, 0, PartiallyAnalyzed), PartiallyAnalyzed);
        // A retried model makes a finished run unfinished again.
        assert_eq!(RunStatus::in_flight_for(1, 1, Processing), PartiallyAnalyzed);
        assert_eq!(RunStatus::in_flight_for(0, 0, Processing), Processing);
    }
}
