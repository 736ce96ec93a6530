//! Deterministic simulated results (§9.4) and progress-event schedules (§8, §9.6).
//!
//! Algorithm, so that other implementations can reproduce the numbers:
//! 1. `h` = SHA-256 of the uploaded bytes; `s` = SHA-256(`h` ‖ UTF-8 model name).
//! 2. `p` = `s[0..8]` read as a big-endian `u64`, divided by 2⁶⁴: P(fake). A `STANDIN:fake` /
//!    `STANDIN:real` marker replaces it by 0.9 / 0.1.
//! 3. A [`SplitMix64`] generator seeded with `s[8..16]` (big-endian `u64`) draws, in this order:
//!    video: one `u` uniform in [−0.15, 0.15) per unit, unit score `clamp(p + u, 0, 1)`;
//!    audio: mean pitch [80, 300), pitch stability [0, 1), RMS energy [0.01, 0.1), silence ratio
//!    [0, 0.5), spectral centroid [800, 3000), spectral contrast [10, 30), then 8 × 8 spectrogram
//!    cells in dB [−80, 0) row by row; image (`image-heatmap` only): 8 × 8 cells
//!    `clamp(p + u, 0, 1)` row by row, or height × width cells (sides capped at 8192) when full
//!    heatmaps are asked for.
//!    With per-frame predictions, video `frame_predictions` lists every frame of the simulated
//!    300-frame video, frame i taking the score of unit `floor(i × units / 300)` (no extra draws).
//! 4. `prediction` = FAKE iff `p > 0.5`; `confidence` = `max(p, 1 − p)`. Scores, confidences and
//!    metrics are rounded to 4 decimals, audio figures in Hz or dB to 2.

use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::catalogue::{MediaType, ModelEntry, Profile};
use crate::failure::Verdict;
use crate::heatmap::{Heatmap, SMALL_SIDE};
use crate::image;
use crate::rng::SplitMix64;

/// The note every simulated result carries (§9.1).
pub const SIMULATED_NOTE: &str = "Simulated result (ML stand-in).";

/// Frames every simulated video has (except profiles that report `frame_count: null`).
const VIDEO_FRAMES: u64 = 300;

fn round_to(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}

/// Rounds to 4 decimals, the precision of every simulated score.
pub fn round4(x: f64) -> f64 {
    round_to(x, 4)
}

fn label(fake: bool) -> &'static str {
    if fake { "FAKE" } else { "REAL" }
}

/// A simulated analysis: the result `data` plus the figures the progress events quote.
#[derive(Debug, Clone)]
pub struct Simulation {
    /// `data` of the success envelope; `processing_time` is set when the call ends.
    pub data: Map<String, Value>,
    pub prediction: &'static str,
    pub confidence: f64,
    /// `frame_count` (video shapes).
    pub total_frames: Option<u64>,
    /// Frames with a face (efficientnet: every 5th frame).
    pub faces_detected: u64,
    /// Audio figures quoted by the scattering schedule.
    pub audio: Option<AudioFigures>,
    /// `image-heatmap` only: the heatmap, written in place of the `null` that
    /// `data["heatmap_scores"]` holds (see [`Simulation::success_body`]).
    pub heatmap: Option<Heatmap>,
}

impl Simulation {
    /// The §6 success envelope as JSON text, built directly (a full-resolution heatmap never
    /// becomes a `serde_json::Value`).
    pub fn success_body(&self, model_used: &str, timestamp: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        out.extend_from_slice(b"{\"success\":true,\"model_used\":");
        write_json(&mut out, model_used);
        out.extend_from_slice(b",\"timestamp\":");
        write_json(&mut out, timestamp);
        out.extend_from_slice(b",\"data\":{");
        for (i, (key, value)) in self.data.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json(&mut out, key);
            out.push(b':');
            match &self.heatmap {
                Some(heatmap) if key == "heatmap_scores" => heatmap.write_json(&mut out),
                _ => write_json(&mut out, value),
            }
        }
        out.extend_from_slice(b"}}");
        out
    }
}

fn write_json(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) {
    // Strings and `Value`s with string keys always serialize; writing to memory cannot fail.
    if let Err(e) = serde_json::to_writer(out, value) {
        tracing::error!(error = %e, "cannot serialize a result field");
    }
}

/// The audio numbers the scattering `ANALYSIS_COMPLETE` event repeats.
#[derive(Debug, Clone, Copy)]
pub struct AudioFigures {
    pub sample_rate: u32,
    pub channels: u32,
    pub mean_pitch: f64,
    pub pitch_stability: f64,
}

/// The result shape actually produced: the profile's, unless the media type calls for another
/// family (a catalogue may flag a model for a type its profile does not describe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Video(Profile),
    Audio { scattering: bool },
    Image { heatmap: bool },
}

fn shape(profile: Profile, media: MediaType) -> Shape {
    match media {
        MediaType::Video => match profile {
            Profile::Siglip
            | Profile::Efficientnet
            | Profile::Colorcues
            | Profile::Eyeblink
            | Profile::VideoGeneric
            | Profile::Lipfd => Shape::Video(profile),
            _ => Shape::Video(Profile::VideoGeneric),
        },
        MediaType::Audio => Shape::Audio { scattering: profile == Profile::Scattering },
        MediaType::Image => Shape::Image { heatmap: profile == Profile::ImageHeatmap },
    }
}

/// `p` = P(fake) and the generator for everything else, from the upload hash and model name.
pub fn seed(sha256: &[u8; 32], model: &str) -> (f64, SplitMix64) {
    let s = Sha256::new().chain_update(sha256).chain_update(model.as_bytes()).finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&s[0..8]);
    let mut second = [0u8; 8];
    second.copy_from_slice(&s[8..16]);
    let p = u64::from_be_bytes(first) as f64 / 2f64.powi(64);
    (p, SplitMix64::new(u64::from_be_bytes(second)))
}

/// How large the result's arrays are: the contract's minimum, or the size the real server gives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outputs {
    /// `image-heatmap`: `heatmap_scores` at the image's resolution, not 8 × 8.
    pub full_heatmap: bool,
    /// Video: one `frame_predictions` entry per frame, not per unit.
    pub per_frame_predictions: bool,
}

/// Simulates `entry` analysing an upload with hash `sha256` whose first bytes are `head`.
pub fn simulate(
    sha256: &[u8; 32],
    entry: &ModelEntry,
    media: MediaType,
    verdict: Option<Verdict>,
    head: &[u8],
    outputs: Outputs,
) -> Simulation {
    let (hashed_p, mut rng) = seed(sha256, &entry.name);
    let p = match verdict {
        Some(Verdict::Fake) => 0.9,
        Some(Verdict::Real) => 0.1,
        None => hashed_p,
    };
    let fake = p > 0.5;
    let confidence = round4(p.max(1.0 - p));
    let mut data = Map::new();
    data.insert("prediction".into(), json!(label(fake)));
    data.insert("confidence".into(), json!(confidence));
    data.insert("processing_time".into(), json!(0.0));
    data.insert("note".into(), json!(SIMULATED_NOTE));
    data.insert("media_type".into(), json!(media.lower()));
    let mut sim = Simulation {
        data,
        prediction: label(fake),
        confidence,
        total_frames: None,
        faces_detected: 0,
        audio: None,
        heatmap: None,
    };
    match shape(entry.profile, media) {
        Shape::Video(profile) => video(&mut sim, profile, p, &mut rng, outputs.per_frame_predictions),
        Shape::Audio { scattering } => audio(&mut sim, scattering, &mut rng),
        Shape::Image { heatmap } => image_fields(&mut sim, heatmap.then_some(outputs.full_heatmap), p, &rng, head),
    }
    sim
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() { 0.0 } else { xs.iter().sum::<f64>() / xs.len() as f64 }
}

fn video(sim: &mut Simulation, profile: Profile, p: f64, rng: &mut SplitMix64, per_frame: bool) {
    let units: usize = match profile {
        Profile::Siglip => 50,
        Profile::Efficientnet => 300,
        Profile::Colorcues => 19,
        Profile::Eyeblink => 3,
        Profile::Lipfd => 200,
        _ => 30,
    };
    let scores: Vec<f64> = (0..units).map(|_| round4((p + rng.range(-0.15, 0.15)).clamp(0.0, 1.0))).collect();
    let frame_count = match profile {
        Profile::Lipfd | Profile::VideoGeneric => None,
        _ => Some(VIDEO_FRAMES),
    };
    let suspicious = scores.iter().filter(|s| **s > 0.5).count();
    let average = round4(mean(&scores));
    // Trailing moving average over 5 units.
    let rolling: Vec<f64> = (0..scores.len()).map(|k| round4(mean(&scores[k.saturating_sub(4)..=k]))).collect();
    let metrics = match profile {
        Profile::Siglip => {
            let max = scores.iter().copied().fold(f64::MIN, f64::max);
            let min = scores.iter().copied().fold(f64::MAX, f64::min);
            let m = mean(&scores);
            let variance = mean(&scores.iter().map(|s| (s - m) * (s - m)).collect::<Vec<_>>());
            json!({
                "rolling_average_scores": rolling,
                "final_average_score": average,
                "max_score": max,
                "min_score": min,
                "score_variance": round4(variance),
                "suspicious_frames_count": suspicious,
            })
        }
        Profile::Efficientnet => {
            // Every 5th frame (1-based 5, 10, …) holds exactly one face.
            let face_scores: Vec<f64> = scores.iter().skip(4).step_by(5).copied().collect();
            sim.faces_detected = face_scores.len() as u64;
            json!({
                "total_faces_detected": face_scores.len(),
                "average_face_score": round4(mean(&face_scores)),
                "suspicious_frames_count": suspicious,
            })
        }
        Profile::Colorcues => json!({
            "sequence_count": units,
            "rolling_average_scores": rolling,
            "final_average_score": average,
            "suspicious_sequences_count": suspicious,
        }),
        Profile::Eyeblink => json!({
            "blink_sequences_found": units,
            "suspicious_blink_sequences": suspicious,
            "average_blink_suspicion": average,
        }),
        Profile::Lipfd => json!({
            "final_average_score": average,
            "window_scores": scores,
        }),
        _ => json!({ "final_average_score": average }),
    };
    let prediction =
        |index: usize, score: f64| json!({"index": index, "score": score, "prediction": label(score > 0.5)});
    let predictions: Vec<Value> = if per_frame {
        let frames = VIDEO_FRAMES as usize;
        (0..frames).map(|i| prediction(i, scores[i * units / frames])).collect()
    } else {
        scores.iter().enumerate().map(|(index, score)| prediction(index, *score)).collect()
    };
    sim.total_frames = frame_count;
    let d = &mut sim.data;
    d.insert("frame_count".into(), json!(frame_count));
    d.insert("frames_analyzed".into(), json!(units));
    d.insert("frame_predictions".into(), Value::Array(predictions));
    d.insert("metrics".into(), metrics);
    d.insert("visualization_path".into(), Value::Null);
}

fn grid(rng: &mut SplitMix64, mut cell: impl FnMut(&mut SplitMix64) -> f64) -> Vec<Vec<f64>> {
    (0..8).map(|_| (0..8).map(|_| cell(rng)).collect()).collect()
}

fn audio(sim: &mut Simulation, scattering: bool, rng: &mut SplitMix64) {
    let (duration, sample_rate, channels) = if scattering { (2.0, 16_000, 2) } else { (10.0, 16_000, 1) };
    let mean_pitch = round_to(rng.range(80.0, 300.0), 2);
    let stability = round4(rng.next_f64());
    let rms = round4(rng.range(0.01, 0.1));
    let silence = round4(rng.range(0.0, 0.5));
    let centroid = round_to(rng.range(800.0, 3000.0), 2);
    let contrast = round_to(rng.range(10.0, 30.0), 2);
    let spectrogram = grid(rng, |r| round_to(r.range(-80.0, 0.0), 2));
    sim.audio = Some(AudioFigures { sample_rate, channels, mean_pitch, pitch_stability: stability });
    let d = &mut sim.data;
    d.insert(
        "properties".into(),
        json!({"duration_seconds": duration, "sample_rate": sample_rate, "channels": channels}),
    );
    d.insert("pitch".into(), json!({"mean_pitch_hz": mean_pitch, "pitch_stability_score": stability}));
    d.insert("energy".into(), json!({"rms_energy": rms, "silence_ratio": silence}));
    d.insert("spectral".into(), json!({"spectral_centroid": centroid, "spectral_contrast": contrast}));
    d.insert("voice_quality".into(), Value::Null);
    d.insert("visualization".into(), json!({"spectrogram_url": null, "spectrogram_data": spectrogram}));
}

/// `heatmap`: `None` for no heatmap, else whether it is full-resolution.
fn image_fields(sim: &mut Simulation, heatmap: Option<bool>, p: f64, rng: &SplitMix64, head: &[u8]) {
    let (width, height) = image::dimensions(head).unwrap_or((640, 480));
    sim.heatmap = heatmap.map(|full| {
        let (w, h) = if full { (width, height) } else { (SMALL_SIDE, SMALL_SIDE) };
        Heatmap::new(w, h, p, rng)
    });
    let d = &mut sim.data;
    d.insert("dimensions".into(), json!({"width": width, "height": height}));
    d.insert("heatmap_scores".into(), Value::Null);
    d.insert("visualization_path".into(), Value::Null);
}

/// One progress event of a schedule (§8).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event: &'static str,
    pub message: String,
    pub progress: Option<u64>,
    pub total: Option<u64>,
    pub details: Value,
    /// Sent only when `userId` is non-empty (all but scattering's extraction/spectrogram events).
    pub needs_user: bool,
    /// `details.processing_time` is filled with the elapsed time when the event is sent.
    pub stamps_processing_time: bool,
}

impl Event {
    fn new(
        event: &'static str,
        message: impl Into<String>,
        progress: Option<u64>,
        total: Option<u64>,
        details: Value,
    ) -> Self {
        Self {
            event,
            message: message.into(),
            progress,
            total,
            details,
            needs_user: true,
            stamps_processing_time: false,
        }
    }

    fn stamped(mut self) -> Self {
        self.stamps_processing_time = true;
        self
    }

    /// The compact JSON published on Redis.
    pub fn payload(&self, media_id: &str, user_id: Option<&str>, model: &str, processing_time: f64) -> String {
        let mut details = self.details.clone();
        if self.stamps_processing_time
            && let Some(obj) = details.as_object_mut()
        {
            obj.insert("processing_time".into(), json!(processing_time));
        }
        json!({
            "media_id": media_id,
            "user_id": user_id,
            "event": self.event,
            "message": self.message,
            "data": {
                "model_name": model,
                "progress": self.progress,
                "total": self.total,
                "details": details,
            },
        })
        .to_string()
    }
}

const PROGRESS: &str = "FRAME_ANALYSIS_PROGRESS";
const COMPLETE: &str = "ANALYSIS_COMPLETE";
const FAILED: &str = "ANALYSIS_FAILED";

/// The events a successful call of `profile` publishes, in order.
pub fn schedule(profile: Profile, model: &str, sim: &Simulation) -> Vec<Event> {
    let verdict = format!("{} (confidence: {:.3})", sim.prediction, sim.confidence);
    match profile {
        Profile::Siglip => {
            let mut events = vec![Event::new(
                PROGRESS,
                format!("Starting analysis with {model}"),
                Some(0),
                None,
                json!({"phase": "initialization"}),
            )];
            events.extend(
                (1..=50)
                    .map(|k| Event::new(PROGRESS, format!("Processed window {k}/50"), Some(k), Some(50), Value::Null)),
            );
            events.push(
                Event::new(
                    COMPLETE,
                    format!("Analysis completed: {verdict}"),
                    None,
                    None,
                    json!({
                        "prediction": sim.prediction,
                        "confidence": sim.confidence,
                        "processing_time": 0.0,
                        "total_frames": sim.total_frames,
                        "windows_analyzed": 50,
                    }),
                )
                .stamped(),
            );
            events
        }
        Profile::Efficientnet => {
            let n = sim.total_frames.unwrap_or(VIDEO_FRAMES);
            let faces = n / 5;
            let mut events = vec![
                Event::new(
                    PROGRESS,
                    format!("Starting analysis with {model}"),
                    Some(0),
                    None,
                    json!({"phase": "initialization"}),
                ),
                Event::new(
                    PROGRESS,
                    format!("Starting frame analysis for {n} frames"),
                    Some(0),
                    Some(n),
                    json!({"phase": "frame_processing_start"}),
                ),
            ];
            events.extend((1..=faces).map(|f| {
                let i = f * 5;
                Event::new(
                    PROGRESS,
                    format!("Analyzed {i}/{n} frames, detected {f} faces"),
                    Some(i),
                    Some(n),
                    json!({"phase": "frame_processing", "faces_detected_so_far": f, "current_frame_faces": 1}),
                )
            }));
            events.push(Event::new(
                PROGRESS,
                format!("Frame analysis completed. Processing {faces} face detections"),
                Some(n),
                Some(n),
                json!({"phase": "frame_analysis_complete", "faces_detected": faces}),
            ));
            events.push(
                Event::new(
                    COMPLETE,
                    format!("Analysis completed: {verdict}"),
                    Some(n),
                    Some(n),
                    json!({
                        "prediction": sim.prediction,
                        "confidence": sim.confidence,
                        "processing_time": 0.0,
                        "total_frames": n,
                        "faces_detected": faces,
                    }),
                )
                .stamped(),
            );
            events
        }
        Profile::Colorcues => (1..=10)
            .map(|j| {
                let k = j * 5;
                Event::new(PROGRESS, format!("Processed window {k}/50"), Some(k), Some(50), Value::Null)
            })
            .collect(),
        Profile::Eyeblink => {
            let n = sim.total_frames.unwrap_or(VIDEO_FRAMES);
            (0..n)
                .step_by(10)
                .map(|i| {
                    Event::new(PROGRESS, format!("Processed window {}/{n}", i + 1), Some(i + 1), Some(n), Value::Null)
                })
                .collect()
        }
        Profile::Scattering => {
            let audio_only = |event: &'static str, message: &str| Event {
                needs_user: false,
                ..Event::new(event, message, None, None, Value::Null)
            };
            let a = sim.audio;
            vec![
                Event::new(
                    PROGRESS,
                    format!("Starting audio analysis with {model}"),
                    Some(0),
                    None,
                    json!({"phase": "initialization", "media_type": "audio"}),
                ),
                audio_only("AUDIO_EXTRACTION_START", "Extracting audio track"),
                audio_only("AUDIO_EXTRACTION_COMPLETE", "Audio extraction complete"),
                audio_only("SPECTROGRAM_GENERATION_START", "Generating spectrogram"),
                audio_only("SPECTROGRAM_GENERATION_COMPLETE", "Spectrogram generation complete"),
                Event::new(
                    COMPLETE,
                    format!("Audio analysis completed: {verdict}"),
                    None,
                    None,
                    json!({
                        "prediction": sim.prediction,
                        "confidence": sim.confidence,
                        "processing_time": 0.0,
                        "media_type": "audio",
                        "sample_rate": a.map(|a| a.sample_rate),
                        "channels": a.map(|a| a.channels),
                        "mean_pitch": a.map(|a| a.mean_pitch),
                        "pitch_stability": a.map(|a| a.pitch_stability),
                    }),
                )
                .stamped(),
            ]
        }
        Profile::VideoGeneric
        | Profile::Lipfd
        | Profile::AudioGeneric
        | Profile::ImageGeneric
        | Profile::ImageHeatmap => Vec::new(),
    }
}

/// The `ANALYSIS_FAILED` event of `profile`, for profiles that have one.
pub fn failure_event(profile: Profile, error: &str) -> Option<Event> {
    match profile {
        Profile::Siglip => {
            Some(Event::new(FAILED, format!("Analysis failed: {error}"), None, None, json!({"error": error})))
        }
        Profile::Efficientnet => Some(
            Event::new(
                FAILED,
                format!("Analysis failed: {error}"),
                None,
                None,
                json!({"error": error, "processing_time": 0.0}),
            )
            .stamped(),
        ),
        Profile::Scattering => Some(
            Event::new(
                FAILED,
                format!("Audio analysis failed: {error}"),
                None,
                None,
                json!({"error": error, "processing_time": 0.0, "media_type": "audio"}),
            )
            .stamped(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Catalogue;

    fn entry(profile: Profile) -> ModelEntry {
        ModelEntry { profile, ..Catalogue::builtin().models()[0].clone() }
    }

    #[test]
    fn p_comes_from_the_first_eight_bytes_of_the_model_hash() {
        let h = [7u8; 32];
        let (p, _) = seed(&h, "SIGLIP-LSTM-V4");
        let s = Sha256::new().chain_update(h).chain_update(b"SIGLIP-LSTM-V4").finalize();
        let expected = u64::from_be_bytes(s[0..8].try_into().expect("8 bytes")) as f64 / 2f64.powi(64);
        assert_eq!(p, expected);
        let (q, _) = seed(&h, "EFFICIENTNET-B7-V1");
        assert_ne!(p, q);
    }

    #[test]
    fn verdict_markers_force_p() {
        let sim =
            simulate(&[1; 32], &entry(Profile::Siglip), MediaType::Video, Some(Verdict::Fake), b"", Outputs::default());
        assert_eq!((sim.prediction, sim.confidence), ("FAKE", 0.9));
        let sim =
            simulate(&[1; 32], &entry(Profile::Siglip), MediaType::Video, Some(Verdict::Real), b"", Outputs::default());
        assert_eq!((sim.prediction, sim.confidence), ("REAL", 0.9));
    }

    #[test]
    fn video_units_and_metrics_follow_the_profile() {
        for (profile, units, frames) in [
            (Profile::Siglip, 50, Some(300)),
            (Profile::Efficientnet, 300, Some(300)),
            (Profile::Colorcues, 19, Some(300)),
            (Profile::Eyeblink, 3, Some(300)),
            (Profile::VideoGeneric, 30, None),
            (Profile::Lipfd, 200, None),
        ] {
            let sim = simulate(&[3; 32], &entry(profile), MediaType::Video, None, b"", Outputs::default());
            assert_eq!(sim.data["frames_analyzed"], json!(units), "{profile:?}");
            assert_eq!(sim.data["frame_count"], json!(frames), "{profile:?}");
            let preds = sim.data["frame_predictions"].as_array().expect("array");
            assert_eq!(preds.len(), units);
            for pred in preds {
                let score = pred["score"].as_f64().expect("score");
                assert!((0.0..=1.0).contains(&score));
                assert_eq!(pred["prediction"], json!(label(score > 0.5)));
            }
        }
    }

    #[test]
    fn schedules_have_the_documented_lengths() {
        let sim = |p| simulate(&[5; 32], &entry(p), MediaType::Video, None, b"", Outputs::default());
        assert_eq!(schedule(Profile::Siglip, "M", &sim(Profile::Siglip)).len(), 52);
        assert_eq!(schedule(Profile::Efficientnet, "M", &sim(Profile::Efficientnet)).len(), 64);
        assert_eq!(schedule(Profile::Colorcues, "M", &sim(Profile::Colorcues)).len(), 10);
        assert_eq!(schedule(Profile::Eyeblink, "M", &sim(Profile::Eyeblink)).len(), 30);
        assert!(schedule(Profile::Lipfd, "M", &sim(Profile::Lipfd)).is_empty());
        let audio = simulate(&[5; 32], &entry(Profile::Scattering), MediaType::Audio, None, b"", Outputs::default());
        let events = schedule(Profile::Scattering, "M", &audio);
        assert_eq!(events.iter().filter(|e| !e.needs_user).count(), 4);
        assert_eq!(events.len(), 6);
    }

    const FULL: Outputs = Outputs { full_heatmap: true, per_frame_predictions: false };

    #[test]
    fn per_frame_predictions_spread_the_unit_scores_over_300_frames() {
        let per_frame = Outputs { full_heatmap: false, per_frame_predictions: true };
        for profile in [Profile::Siglip, Profile::Colorcues, Profile::Lipfd, Profile::Efficientnet] {
            let units = simulate(&[4; 32], &entry(profile), MediaType::Video, None, b"", Outputs::default());
            let frames = simulate(&[4; 32], &entry(profile), MediaType::Video, None, b"", per_frame);
            let by_unit = units.data["frame_predictions"].as_array().expect("array");
            let by_frame = frames.data["frame_predictions"].as_array().expect("array");
            assert_eq!(by_frame.len(), 300, "{profile:?}");
            for (i, f) in by_frame.iter().enumerate() {
                assert_eq!(f["index"], json!(i));
                assert_eq!(f["score"], by_unit[i * by_unit.len() / 300]["score"], "{profile:?} frame {i}");
            }
            // Everything else is the per-unit result.
            for key in ["prediction", "confidence", "frames_analyzed", "frame_count", "metrics"] {
                assert_eq!(frames.data[key], units.data[key], "{profile:?} {key}");
            }
        }
    }

    fn png_head(width: u32, height: u32) -> Vec<u8> {
        let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        b.extend_from_slice(&width.to_be_bytes());
        b.extend_from_slice(&height.to_be_bytes());
        b
    }

    #[test]
    fn success_bodies_are_the_envelope_with_the_heatmap_in_place() {
        let head = png_head(3, 2);
        let sim = simulate(&[9; 32], &entry(Profile::ImageHeatmap), MediaType::Image, None, &head, Outputs::default());
        let body: Value = serde_json::from_slice(&sim.success_body("M", "2025-01-01T00:00:00.000000")).expect("json");
        assert_eq!(body["success"], true);
        assert_eq!(body["model_used"], "M");
        let data = body["data"].as_object().expect("data");
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "prediction",
                "confidence",
                "processing_time",
                "note",
                "media_type",
                "dimensions",
                "heatmap_scores",
                "visualization_path"
            ]
        );
        assert_eq!(data["dimensions"], json!({"width": 3, "height": 2}));
        // The default heatmap keeps the documented 8 × 8 draw from the model's generator.
        let (p, mut rng) = seed(&[9; 32], "SIGLIP-LSTM-V4");
        let expected: Vec<Vec<f64>> =
            (0..8).map(|_| (0..8).map(|_| round4((p + rng.range(-0.15, 0.15)).clamp(0.0, 1.0))).collect()).collect();
        assert_eq!(data["heatmap_scores"], json!(expected));

        let full = simulate(&[9; 32], &entry(Profile::ImageHeatmap), MediaType::Image, None, &head, FULL);
        let body: Value = serde_json::from_slice(&full.success_body("M", "t")).expect("json");
        assert_eq!(body["data"]["heatmap_scores"], json!([expected[0][..3], expected[0][3..6]]));
        let generic = simulate(&[9; 32], &entry(Profile::ImageGeneric), MediaType::Image, None, &head, FULL);
        let body: Value = serde_json::from_slice(&generic.success_body("M", "t")).expect("json");
        assert!(body["data"]["heatmap_scores"].is_null());
    }

    #[test]
    fn payloads_are_compact_json_in_contract_order() {
        let e = Event::new(PROGRESS, "Processed window 3/50", Some(3), Some(50), Value::Null);
        assert_eq!(
            e.payload("m1", Some("u1"), "SIGLIP-LSTM-V4", 0.0),
            r#"{"media_id":"m1","user_id":"u1","event":"FRAME_ANALYSIS_PROGRESS","message":"Processed window 3/50","data":{"model_name":"SIGLIP-LSTM-V4","progress":3,"total":50,"details":null}}"#
        );
    }
}
