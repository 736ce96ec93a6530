//! The model catalogue (§9.3): which simulated models exist, in which order, and how they behave.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::failure::FailureMode;

/// Result shape and progress-event schedule of a simulated model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    Siglip,
    Efficientnet,
    Colorcues,
    Eyeblink,
    VideoGeneric,
    Lipfd,
    Scattering,
    AudioGeneric,
    ImageGeneric,
    ImageHeatmap,
}

impl Profile {
    /// Every profile, in documentation order.
    pub const ALL: [Profile; 10] = [
        Self::Siglip,
        Self::Efficientnet,
        Self::Colorcues,
        Self::Eyeblink,
        Self::VideoGeneric,
        Self::Lipfd,
        Self::Scattering,
        Self::AudioGeneric,
        Self::ImageGeneric,
        Self::ImageHeatmap,
    ];

    /// The name used in catalogue files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Siglip => "siglip",
            Self::Efficientnet => "efficientnet",
            Self::Colorcues => "colorcues",
            Self::Eyeblink => "eyeblink",
            Self::VideoGeneric => "video-generic",
            Self::Lipfd => "lipfd",
            Self::Scattering => "scattering",
            Self::AudioGeneric => "audio-generic",
            Self::ImageGeneric => "image-generic",
            Self::ImageHeatmap => "image-heatmap",
        }
    }

    /// Latency used when a catalogue entry gives no `latency_ms`.
    pub fn default_latency_ms(self) -> u64 {
        match self {
            Self::Siglip => 3000,
            Self::Efficientnet | Self::Colorcues | Self::Eyeblink | Self::VideoGeneric => 2000,
            Self::Lipfd => 4000,
            Self::Scattering | Self::AudioGeneric => 1000,
            Self::ImageGeneric | Self::ImageHeatmap => 500,
        }
    }
}

/// One simulated model, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelEntry {
    pub name: String,
    pub class_name: String,
    /// Always starts with `[simulated] ` (§9.1).
    pub description: String,
    pub is_video: bool,
    pub is_audio: bool,
    pub is_image: bool,
    pub is_multimodal: bool,
    pub loaded: bool,
    pub profile: Profile,
    pub latency: Duration,
    pub fail: Option<FailureMode>,
    pub fail_rate: f64,
    /// `image-heatmap` results carry a heatmap at the image's full resolution, not 8 × 8.
    pub full_heatmap: bool,
}

/// The media types of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    Video,
    Audio,
    Image,
}

impl MediaType {
    /// `VIDEO`, `AUDIO`, `IMAGE`: the spelling of the 415/422 messages.
    pub fn upper(self) -> &'static str {
        match self {
            Self::Video => "VIDEO",
            Self::Audio => "AUDIO",
            Self::Image => "IMAGE",
        }
    }

    /// `video`, `audio`, `image`: the spelling of `data.media_type`.
    pub fn lower(self) -> &'static str {
        match self {
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Image => "image",
        }
    }
}

impl ModelEntry {
    /// Whether the model's flag for `media` is set (`isMultiModal` plays no part server-side).
    pub fn supports(&self, media: MediaType) -> bool {
        match media {
            MediaType::Video => self.is_video,
            MediaType::Audio => self.is_audio,
            MediaType::Image => self.is_image,
        }
    }

    /// Whether `media`'s flag is the only one of `isVideo`/`isAudio`/`isImage` set.
    fn only_supports(&self, media: MediaType) -> bool {
        let flags = [self.is_video, self.is_audio, self.is_image];
        self.supports(media) && flags.iter().filter(|f| **f).count() == 1
    }
}

/// An ordered, validated list of models. Order is meaningful everywhere (§2, §4).
#[derive(Debug, Clone, PartialEq)]
pub struct Catalogue {
    models: Vec<ModelEntry>,
}

/// Why a catalogue could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("cannot read catalogue {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid JSON catalogue: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid TOML catalogue: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("catalogue is neither valid JSON ({json}) nor valid TOML ({toml})")]
    Unknown { json: String, toml: String },
    #[error("invalid catalogue: {0}")]
    Invalid(String),
}

/// An entry as written in a catalogue file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: String,
    class_name: Option<String>,
    description: Option<String>,
    #[serde(rename = "isVideo", default)]
    is_video: bool,
    #[serde(rename = "isAudio", default)]
    is_audio: bool,
    #[serde(rename = "isImage", default)]
    is_image: bool,
    #[serde(rename = "isMultiModal", default)]
    is_multimodal: bool,
    #[serde(default = "default_loaded")]
    loaded: bool,
    profile: Profile,
    latency_ms: Option<u64>,
    fail: Option<String>,
    fail_rate: Option<f64>,
    #[serde(default)]
    full_heatmap: bool,
}

fn default_loaded() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalogue {
    models: Vec<RawEntry>,
}

/// Which syntax a catalogue text is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Toml,
    /// Try JSON, then TOML.
    Detect,
}

const SIMULATED_PREFIX: &str = "[simulated] ";

impl Catalogue {
    /// The built-in catalogue of §9.3.
    pub fn builtin() -> Self {
        let entry = |name: &str, class: &str, desc: &str, flags: (bool, bool, bool, bool), profile| ModelEntry {
            name: name.into(),
            class_name: class.into(),
            description: format!("{SIMULATED_PREFIX}{desc}"),
            is_video: flags.0,
            is_audio: flags.1,
            is_image: flags.2,
            is_multimodal: flags.3,
            loaded: true,
            profile,
            latency: Duration::from_millis(Profile::default_latency_ms(profile)),
            fail: None,
            fail_rate: 0.0,
            full_heatmap: false,
        };
        Self {
            models: vec![
                entry(
                    "SIGLIP-LSTM-V4",
                    "SiglipLSTMV4",
                    "V4 SigLIP-LSTM video detector (50 windows)",
                    (true, false, false, false),
                    Profile::Siglip,
                ),
                entry(
                    "EFFICIENTNET-B7-V1",
                    "EfficientNetB7Detector",
                    "EfficientNet-B7 frame-level face detector",
                    (true, false, false, false),
                    Profile::Efficientnet,
                ),
                entry(
                    "LIP-FD-V1",
                    "LipFDetectorV1",
                    "Audio-visual lip-sync forgery detector",
                    (true, true, false, true),
                    Profile::Lipfd,
                ),
                entry(
                    "SCATTERING-WAVE-V1",
                    "ScatteringWaveV1",
                    "Wavelet-scattering audio deepfake detector",
                    (false, true, false, false),
                    Profile::Scattering,
                ),
                entry(
                    "CROSS-EFFICIENT-VIT-IMG",
                    "CrossEfficientViTDetector",
                    "Cross Efficient ViT image detector",
                    (false, false, true, false),
                    Profile::ImageGeneric,
                ),
            ],
        }
    }

    /// Reads a catalogue file; `.toml` files are TOML, `.json` files JSON, others either.
    pub fn load(path: &Path) -> Result<Self, CatalogueError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| CatalogueError::Read { path: path.display().to_string(), source })?;
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("toml") => Format::Toml,
            Some(e) if e.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Detect,
        };
        Self::parse(&text, format)
    }

    /// Parses catalogue text: JSON (`[entry…]` or `{"models":[entry…]}`) or TOML (`[[models]]`).
    pub fn parse(text: &str, format: Format) -> Result<Self, CatalogueError> {
        let raw = match format {
            Format::Json => parse_json(text)?,
            Format::Toml => toml::from_str::<RawCatalogue>(text)?.models,
            Format::Detect => match parse_json(text) {
                Ok(raw) => raw,
                Err(json) => match toml::from_str::<RawCatalogue>(text) {
                    Ok(raw) => raw.models,
                    Err(toml) => {
                        return Err(CatalogueError::Unknown { json: json.to_string(), toml: toml.to_string() });
                    }
                },
            },
        };
        Self::validate(raw)
    }

    fn validate(raw: Vec<RawEntry>) -> Result<Self, CatalogueError> {
        let invalid = |msg: String| Err(CatalogueError::Invalid(msg));
        if raw.is_empty() {
            return invalid("no models".into());
        }
        let mut models: Vec<ModelEntry> = Vec::with_capacity(raw.len());
        for r in raw {
            let name = r.name.trim().to_owned();
            if name.is_empty() {
                return invalid("a model has an empty name".into());
            }
            if models.iter().any(|m| m.name == name) {
                return invalid(format!("model '{name}' is listed twice"));
            }
            let fail = match r.fail.as_deref() {
                None => None,
                Some(text) => {
                    let mode: FailureMode =
                        text.parse().map_err(|e| CatalogueError::Invalid(format!("model '{name}': fail: {e}")))?;
                    if !mode.allowed_outside_markers() {
                        return invalid(format!("model '{name}': flaky-<n> is a marker-only mode"));
                    }
                    Some(mode)
                }
            };
            let fail_rate = r.fail_rate.unwrap_or(0.0);
            if !(0.0..=1.0).contains(&fail_rate) {
                return invalid(format!("model '{name}': fail_rate must be within 0–1"));
            }
            let description = r.description.unwrap_or_else(|| format!("Simulated {name}"));
            let description = if description.starts_with(SIMULATED_PREFIX) {
                description
            } else {
                format!("{SIMULATED_PREFIX}{description}")
            };
            models.push(ModelEntry {
                class_name: r.class_name.unwrap_or_else(|| name.clone()),
                name,
                description,
                is_video: r.is_video,
                is_audio: r.is_audio,
                is_image: r.is_image,
                is_multimodal: r.is_multimodal,
                loaded: r.loaded,
                profile: r.profile,
                latency: Duration::from_millis(r.latency_ms.unwrap_or_else(|| r.profile.default_latency_ms())),
                fail,
                fail_rate,
                full_heatmap: r.full_heatmap,
            });
        }
        Ok(Self { models })
    }

    /// The models in catalogue order.
    pub fn models(&self) -> &[ModelEntry] {
        &self.models
    }

    /// The first entry's name (§9.3).
    pub fn default_model(&self) -> &str {
        self.models.first().map_or("", |m| m.name.as_str())
    }

    /// The loaded model called exactly `name`.
    pub fn loaded(&self, name: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.loaded && m.name == name)
    }

    /// The model a server-side fallback from `primary` uses: the next loaded model after it in
    /// catalogue order that supports `media` (wrapping around), else the first other loaded
    /// model; `None` when no other model is loaded.
    pub fn fallback_for(&self, primary: &str, media: MediaType) -> Option<&ModelEntry> {
        let start = self.models.iter().position(|m| m.name == primary).map_or(0, |i| i + 1);
        let n = self.models.len();
        let others = || (0..n).map(|k| &self.models[(start + k) % n]).filter(|m| m.loaded && m.name != primary);
        others().find(|m| m.supports(media)).or_else(|| others().next())
    }

    /// Server-side auto-selection (§5): loaded models whose only flag is `media`, else any loaded
    /// model with that flag; within the group the default model if present, else the first.
    pub fn auto_select(&self, media: MediaType) -> Option<&ModelEntry> {
        let loaded = || self.models.iter().filter(|m| m.loaded);
        let only: Vec<&ModelEntry> = loaded().filter(|m| m.only_supports(media)).collect();
        let group = if only.is_empty() { loaded().filter(|m| m.supports(media)).collect() } else { only };
        group.iter().find(|m| m.name == self.default_model()).or_else(|| group.first()).copied()
    }
}

fn parse_json(text: &str) -> Result<Vec<RawEntry>, serde_json::Error> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    if value.is_array() {
        serde_json::from_value(value)
    } else {
        Ok(serde_json::from_value::<RawCatalogue>(value)?.models)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalogue_matches_the_contract_table() {
        let c = Catalogue::builtin();
        let names: Vec<&str> = c.models().iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            ["SIGLIP-LSTM-V4", "EFFICIENTNET-B7-V1", "LIP-FD-V1", "SCATTERING-WAVE-V1", "CROSS-EFFICIENT-VIT-IMG"]
        );
        assert_eq!(c.default_model(), "SIGLIP-LSTM-V4");
        assert!(c.models().iter().all(|m| m.description.starts_with("[simulated] ")));
        let lipfd = &c.models()[2];
        assert!(lipfd.is_video && lipfd.is_audio && lipfd.is_multimodal);
        assert_eq!(lipfd.latency, Duration::from_millis(4000));
    }

    #[test]
    fn json_and_toml_catalogues_parse_to_the_same_entries() {
        let json = r#"{"models":[{"name":"A","profile":"siglip","isVideo":true,"latency_ms":10,
            "fail":"429"},{"name":"B","profile":"image-heatmap","isImage":true,"loaded":false,
            "fail_rate":0.25,"description":"[simulated] b","full_heatmap":true}]}"#;
        let toml = r#"
            [[models]]
            name = "A"
            profile = "siglip"
            isVideo = true
            latency_ms = 10
            fail = "429"

            [[models]]
            name = "B"
            profile = "image-heatmap"
            isImage = true
            loaded = false
            fail_rate = 0.25
            description = "[simulated] b"
            full_heatmap = true
        "#;
        let a = Catalogue::parse(json, Format::Detect).expect("json");
        let b = Catalogue::parse(toml, Format::Detect).expect("toml");
        assert_eq!(a, b);
        assert_eq!(a.models()[0].fail, Some(FailureMode::RateLimited));
        assert_eq!(a.models()[0].description, "[simulated] Simulated A");
        assert!(!a.models()[1].loaded);
        assert!(a.models()[1].full_heatmap && !a.models()[0].full_heatmap);
        let bare = Catalogue::parse(r#"[{"name":"A","profile":"lipfd"}]"#, Format::Json);
        assert_eq!(bare.expect("array form").models()[0].latency, Duration::from_millis(4000));
    }

    #[test]
    fn invalid_catalogues_are_rejected_with_a_reason() {
        for bad in [
            r#"[]"#,
            r#"[{"name":"A","profile":"nope"}]"#,
            r#"[{"name":"A","profile":"siglip","isvideo":true}]"#,
            r#"[{"name":"A","profile":"siglip"},{"name":"A","profile":"siglip"}]"#,
            r#"[{"name":"A","profile":"siglip","fail":"flaky-2"}]"#,
            r#"[{"name":"A","profile":"siglip","fail_rate":1.5}]"#,
        ] {
            assert!(Catalogue::parse(bad, Format::Json).is_err(), "{bad}");
        }
    }

    #[test]
    fn fallbacks_take_the_next_loaded_model_for_the_media_type_wrapping_around() {
        let c = Catalogue::parse(
            r#"[{"name":"V1","profile":"siglip","isVideo":true},
                {"name":"A","profile":"scattering","isAudio":true},
                {"name":"V2","profile":"efficientnet","isVideo":true,"loaded":false},
                {"name":"V3","profile":"colorcues","isVideo":true},
                {"name":"I","profile":"image-heatmap","isImage":true}]"#,
            Format::Json,
        )
        .expect("catalogue");
        let fallback = |primary, media| c.fallback_for(primary, media).map(|m| m.name.as_str());
        assert_eq!(fallback("V1", MediaType::Video), Some("V3"));
        assert_eq!(fallback("V3", MediaType::Video), Some("V1"));
        // No other image model: the first other loaded model after it.
        assert_eq!(fallback("I", MediaType::Image), Some("V1"));
        assert_eq!(fallback("A", MediaType::Audio), Some("V3"));
        let single = Catalogue::parse(r#"[{"name":"X","profile":"siglip","isVideo":true}]"#, Format::Json);
        assert!(single.expect("catalogue").fallback_for("X", MediaType::Video).is_none());
    }

    #[test]
    fn auto_selection_prefers_single_purpose_models_then_the_default() {
        let c = Catalogue::builtin();
        assert_eq!(c.auto_select(MediaType::Video).map(|m| m.name.as_str()), Some("SIGLIP-LSTM-V4"));
        assert_eq!(c.auto_select(MediaType::Audio).map(|m| m.name.as_str()), Some("SCATTERING-WAVE-V1"));
        let only_multi = Catalogue::parse(
            r#"[{"name":"V","profile":"siglip","isVideo":true},
                {"name":"M","profile":"lipfd","isVideo":true,"isAudio":true}]"#,
            Format::Json,
        )
        .expect("catalogue");
        assert_eq!(only_multi.auto_select(MediaType::Audio).map(|m| m.name.as_str()), Some("M"));
        assert!(only_multi.auto_select(MediaType::Image).is_none());
    }
}
