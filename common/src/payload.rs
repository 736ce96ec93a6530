//! Bounded result payloads.
//!
//! A model's `data` can be tens of MB (a full-resolution `heatmap_scores` of a 4K image is about
//! 160 MB of JSON), and the same object used to travel in every `GET /media`, `GET /media/:id`,
//! run response and `media_update`. What the frontend draws needs far less, so the stored and
//! served `resultPayload` is bounded; the full answer, byte for byte, stays in storage and is served
//! by `GET /media/:id/analyses/:analysisId/result`.
//!
//! The bound, per analysis: `heatmap_scores` at most [`MAX_HEATMAP_SIDE`]² cells (block means),
//! `visualization.spectrogram_data` at most [`MAX_SPECTROGRAM_SIDE`]² (1-D: [`MAX_SERIES`]),
//! `frame_predictions` and the arrays of `metrics` at most [`MAX_SERIES`] entries (evenly sampled,
//! each keeping its own `index`), and at most [`MAX_PAYLOAD_BYTES`] serialized in all (larger
//! top-level fields are then omitted, largest first, and named in `omitted_fields`). Each reduction is flagged
//! next to the field it touched (`…_downsampled` / `…_sampled` with the full shape or length).

use serde_json::{Map, Value, json};

pub const MAX_HEATMAP_SIDE: usize = 64;
pub const MAX_SPECTROGRAM_SIDE: usize = 128;
pub const MAX_SERIES: usize = 2_000;
/// Serialized size of one bounded payload, at most.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// Reduces `payload` to the bound above; returns whether anything changed.
pub fn bound(payload: &mut Value) -> bool {
    let Value::Object(map) = payload else { return false };
    let mut changed = false;
    if let Some((grid, h, w)) = map.get("heatmap_scores").and_then(|v| pool_2d(v, MAX_HEATMAP_SIDE)) {
        map.insert("heatmap_scores".into(), grid);
        map.insert("heatmap_scores_downsampled".into(), Value::Bool(true));
        map.insert("heatmap_scores_full_shape".into(), json!({ "height": h, "width": w }));
        changed = true;
    }
    if let Some(Value::Object(vis)) = map.get_mut("visualization") {
        let reduced = match vis.get("spectrogram_data") {
            Some(v @ Value::Array(rows)) if rows.first().is_some_and(Value::is_array) => {
                pool_2d(v, MAX_SPECTROGRAM_SIDE).map(|(g, h, w)| (g, json!({ "height": h, "width": w })))
            }
            Some(Value::Array(xs)) if xs.len() > MAX_SERIES => {
                Some((pool_1d(xs, MAX_SERIES), json!({ "length": xs.len() })))
            }
            _ => None,
        };
        if let Some((data, shape)) = reduced {
            vis.insert("spectrogram_data".into(), data);
            vis.insert("spectrogram_data_downsampled".into(), Value::Bool(true));
            vis.insert("spectrogram_data_full_shape".into(), shape);
            changed = true;
        }
    }
    changed |= sample_field(map, "frame_predictions");
    if let Some(Value::Object(metrics)) = map.get_mut("metrics") {
        let keys: Vec<String> = metrics
            .iter()
            .filter(|(_, v)| v.as_array().is_some_and(|a| a.len() > MAX_SERIES))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            changed |= sample_field(metrics, &k);
        }
    }
    let mut total = serialized_len(payload);
    if total > MAX_PAYLOAD_BYTES
        && let Value::Object(map) = payload
    {
        // Largest first, until the whole fits.
        let mut sizes: Vec<(String, usize)> = map.iter().map(|(k, v)| (k.clone(), serialized_len(v))).collect();
        sizes.sort_by_key(|s| std::cmp::Reverse(s.1));
        let mut omitted = Vec::new();
        for (k, size) in sizes {
            if total + 64 * (omitted.len() + 1) <= MAX_PAYLOAD_BYTES {
                break;
            }
            map.insert(k.clone(), Value::Null);
            total = total.saturating_sub(size.saturating_sub(4));
            omitted.push(k);
        }
        map.insert("omitted_fields".into(), json!(omitted));
        changed = true;
    }
    changed
}

fn serialized_len(v: &Value) -> usize {
    serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX)
}

/// Evenly samples an over-long array field to [`MAX_SERIES`] entries, flagging it.
fn sample_field(map: &mut Map<String, Value>, key: &str) -> bool {
    let Some(Value::Array(xs)) = map.get(key) else { return false };
    let n = xs.len();
    if n <= MAX_SERIES {
        return false;
    }
    let sampled: Vec<Value> = (0..MAX_SERIES).map(|i| xs[i * n / MAX_SERIES].clone()).collect();
    map.insert(key.into(), Value::Array(sampled));
    map.insert(format!("{key}_sampled"), Value::Bool(true));
    map.insert(format!("{key}_total"), json!(n));
    true
}

fn round4(x: f64) -> Value {
    json!((x * 10_000.0).round() / 10_000.0)
}

/// Block means of a 1-D numeric array down to `max` entries.
fn pool_1d(xs: &[Value], max: usize) -> Value {
    let n = xs.len();
    let out = n.min(max);
    Value::Array(
        (0..out)
            .map(|i| {
                let block = &xs[i * n / out..((i + 1) * n / out).max(i * n / out + 1)];
                let nums: Vec<f64> = block.iter().filter_map(Value::as_f64).collect();
                if nums.is_empty() { Value::Null } else { round4(nums.iter().sum::<f64>() / nums.len() as f64) }
            })
            .collect(),
    )
}

/// Block means of a 2-D numeric array (rows of equal length) down to at most `max` × `max`;
/// `None` when it is not 2-D or already within the bound. Returns (grid, height, width).
fn pool_2d(v: &Value, max: usize) -> Option<(Value, usize, usize)> {
    let rows = v.as_array()?;
    let h = rows.len();
    let w = rows.iter().map(|r| r.as_array().map_or(0, Vec::len)).max()?;
    if h <= max && w <= max {
        return None;
    }
    let (oh, ow) = (h.min(max), w.min(max).max(1));
    let mut sums = vec![0.0f64; oh * ow];
    let mut counts = vec![0u32; oh * ow];
    for (y, row) in rows.iter().enumerate() {
        let Some(row) = row.as_array() else { continue };
        let oy = y * oh / h;
        for (x, cell) in row.iter().enumerate() {
            if let Some(f) = cell.as_f64() {
                let i = oy * ow + x * ow / w;
                sums[i] += f;
                counts[i] += 1;
            }
        }
    }
    let grid = (0..oh)
        .map(|y| {
            Value::Array(
                (0..ow)
                    .map(|x| {
                        let i = y * ow + x;
                        if counts[i] == 0 { Value::Null } else { round4(sums[i] / f64::from(counts[i])) }
                    })
                    .collect(),
            )
        })
        .collect();
    Some((Value::Array(grid), h, w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(h: usize, w: usize) -> Value {
        Value::Array((0..h).map(|y| Value::Array((0..w).map(|x| json!(((x + y) % 2) as f64)).collect())).collect())
    }

    #[test]
    fn a_large_heatmap_becomes_a_flagged_64_by_64_grid_of_block_means() {
        let mut p = json!({"prediction": "FAKE", "heatmap_scores": grid(480, 640), "dimensions": {"width": 640, "height": 480}});
        assert!(bound(&mut p));
        let rows = p["heatmap_scores"].as_array().expect("rows");
        assert_eq!(rows.len(), 64);
        assert!(rows.iter().all(|r| r.as_array().is_some_and(|r| r.len() == 64)));
        // A checkerboard averages to one half in every block.
        assert_eq!(rows[10][20], json!(0.5));
        assert_eq!(p["heatmap_scores_downsampled"], true);
        assert_eq!(p["heatmap_scores_full_shape"], json!({"height": 480, "width": 640}));
        assert_eq!(p["prediction"], "FAKE");
    }

    #[test]
    fn small_payloads_are_left_alone() {
        let original = json!({"heatmap_scores": grid(8, 8), "visualization": {"spectrogram_data": grid(8, 8)},
                              "frame_predictions": [{"index": 0, "score": 0.1, "prediction": "REAL"}]});
        let mut p = original.clone();
        assert!(!bound(&mut p));
        assert_eq!(p, original);
    }

    #[test]
    fn long_series_are_sampled_keeping_their_indexes() {
        let frames: Vec<Value> = (0..10_000).map(|i| json!({"index": i, "score": 0.5, "prediction": "REAL"})).collect();
        let mut p = json!({"frame_predictions": frames, "metrics": {"window_scores": vec![0.5; 5000], "max_score": 1}});
        assert!(bound(&mut p));
        assert_eq!(p["frame_predictions"].as_array().map(Vec::len), Some(MAX_SERIES));
        assert_eq!(p["frame_predictions"][1]["index"], 5);
        assert_eq!(p["frame_predictions_total"], 10_000);
        assert_eq!(p["metrics"]["window_scores"].as_array().map(Vec::len), Some(MAX_SERIES));
        assert_eq!(p["metrics"]["max_score"], 1);
    }

    #[test]
    fn a_2d_spectrogram_is_pooled_and_whatever_remains_too_large_is_omitted() {
        let mut p = json!({"visualization": {"spectrogram_url": "u", "spectrogram_data": grid(300, 2000)},
                           "note": "x".repeat(MAX_PAYLOAD_BYTES)});
        assert!(bound(&mut p));
        assert_eq!(p["visualization"]["spectrogram_data"].as_array().map(Vec::len), Some(MAX_SPECTROGRAM_SIDE));
        assert_eq!(p["visualization"]["spectrogram_data_full_shape"], json!({"height": 300, "width": 2000}));
        assert_eq!(p["note"], Value::Null);
        assert_eq!(p["omitted_fields"], json!(["note"]));
        assert!(serialized_len(&p) <= MAX_PAYLOAD_BYTES);
    }
}
