//! ffprobe and the `metadata` summary of `docs/contract.md` §3.2.

use std::process::Stdio;

use serde_json::{Value, json};

/// Runs `ffprobe -v error -print_format json -show_format -show_streams <location>` and returns its
/// JSON output. The child is killed when the future is dropped (activity cancelled).
pub async fn ffprobe(location: &str) -> anyhow::Result<Value> {
    let output = tokio::process::Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams"])
        .arg(location)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        anyhow::bail!("ffprobe exited with {}: {}", output.status, stderr.trim().chars().take(300).collect::<String>());
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// A number ffprobe reports either as a JSON number or as a decimal string; 0 when absent.
fn num_f64(v: Option<&Value>) -> f64 {
    match v {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

fn num_i64(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).unwrap_or(0),
        Some(Value::String(s)) => {
            s.trim().parse::<i64>().ok().or_else(|| s.trim().parse::<f64>().ok().map(|f| f as i64)).unwrap_or(0)
        }
        _ => 0,
    }
}

fn text(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or_default().to_string()
}

/// The probe summary: `metadata` in the contract's camelCase shape, and whether an audio stream
/// exists.
pub fn summarize(probe: &Value) -> (Value, bool) {
    let format = probe.get("format");
    let field = |k: &str| format.and_then(|f| f.get(k));
    let streams: Vec<&Value> =
        probe.get("streams").and_then(Value::as_array).map(|s| s.iter().collect()).unwrap_or_default();
    let of_kind =
        |kind: &str| streams.iter().copied().find(|s| s.get("codec_type").and_then(Value::as_str) == Some(kind));

    let video = of_kind("video").map(|s| {
        json!({
            "codecName": text(s.get("codec_name")),
            "width": num_i64(s.get("width")),
            "height": num_i64(s.get("height")),
            "frameRate": s.get("r_frame_rate").and_then(Value::as_str).or_else(|| s.get("avg_frame_rate").and_then(Value::as_str)).unwrap_or("0/0"),
            "bitRate": num_i64(s.get("bit_rate")),
        })
    });
    let audio_stream = of_kind("audio");
    let audio = audio_stream.map(|s| {
        json!({
            "codecName": text(s.get("codec_name")),
            "sampleRate": num_i64(s.get("sample_rate")),
            "channels": num_i64(s.get("channels")),
            "bitRate": num_i64(s.get("bit_rate")),
        })
    });
    let summary = json!({
        "format": {
            "duration": num_f64(field("duration")),
            "size": num_i64(field("size")),
            "bitRate": num_i64(field("bit_rate")),
            "formatName": text(field("format_name")),
        },
        "video": video,
        "audio": audio,
        "streams": streams.iter().map(|s| json!({
            "codecType": text(s.get("codec_type")),
            "codecName": text(s.get("codec_name")),
        })).collect::<Vec<_>>(),
    });
    (summary, audio_stream.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_output_is_summarized_in_contract_shape() {
        let probe = json!({
            "streams": [
                {"codec_type": "video", "codec_name": "h264", "width": 1280, "height": 720, "r_frame_rate": "30/1", "bit_rate": "3200000"},
                {"codec_type": "audio", "codec_name": "aac", "sample_rate": "44100", "channels": 2, "bit_rate": "128000"}
            ],
            "format": {"duration": "12.480000", "size": "5242880", "bit_rate": "3360512", "format_name": "mov,mp4,m4a,3gp,3g2,mj2"}
        });
        let (m, has_audio) = summarize(&probe);
        assert!(has_audio);
        assert_eq!(
            m,
            json!({ "format": { "duration": 12.48, "size": 5242880, "bitRate": 3360512, "formatName": "mov,mp4,m4a,3gp,3g2,mj2" },
                    "video": { "codecName": "h264", "width": 1280, "height": 720, "frameRate": "30/1", "bitRate": 3200000 },
                    "audio": { "codecName": "aac", "sampleRate": 44100, "channels": 2, "bitRate": 128000 },
                    "streams": [ { "codecType": "video", "codecName": "h264" }, { "codecType": "audio", "codecName": "aac" } ] })
        );
    }

    #[test]
    fn absent_streams_are_null_and_unreported_numbers_zero() {
        let (m, has_audio) =
            summarize(&json!({"streams": [{"codec_type": "video", "codec_name": "vp9"}], "format": {}}));
        assert!(!has_audio);
        assert_eq!(m["audio"], Value::Null);
        assert_eq!(m["video"]["bitRate"], json!(0));
        assert_eq!(m["format"]["duration"], json!(0.0));
    }
}
