//! `heatmap_scores` of `image-heatmap` results (§6, §9.4): 8 × 8, or one cell per pixel like the
//! real server's full-resolution heatmaps.
//!
//! A 3840 × 2160 heatmap has 8.3 million cells; as `serde_json::Value`s that is hundreds of MiB
//! and seconds of work. So a heatmap is only its generator: cells are drawn while the JSON text
//! is written, straight into the response body, each from a table of the 10 001 possible
//! 4-decimal values formatted once by `serde_json` (so the text is exactly what serializing the
//! `f64`s would give).

use std::sync::OnceLock;

use crate::rng::SplitMix64;

/// Side of the default heatmap.
pub const SMALL_SIDE: u32 = 8;

/// Largest side of a full-resolution heatmap; larger images get a heatmap cropped to this, which
/// bounds a response to about 470 MB.
pub const MAX_SIDE: u32 = 8192;

/// A `height × width` grid of cells `clamp(p + u, 0, 1)` rounded to 4 decimals, `u` uniform in
/// [−0.15, 0.15) drawn row by row from the result's generator.
#[derive(Debug, Clone)]
pub struct Heatmap {
    width: u32,
    height: u32,
    p: f64,
    rng: SplitMix64,
}

impl Heatmap {
    /// A heatmap drawing from `rng` (a copy: the caller's generator does not advance); sides
    /// beyond [`MAX_SIDE`] are cut to it.
    pub fn new(width: u32, height: u32, p: f64, rng: &SplitMix64) -> Self {
        Self { width: width.min(MAX_SIDE), height: height.min(MAX_SIDE), p, rng: rng.clone() }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Cells in ten-thousandths (0–10 000), row by row.
    fn cells(&self) -> impl Iterator<Item = usize> + use<> {
        let (p, mut rng) = (self.p, self.rng.clone());
        let count = self.width as usize * self.height as usize;
        // Same arithmetic as `round4`, so `n / 10 000` is the very `f64` it would give.
        (0..count).map(move |_| ((p + rng.range(-0.15, 0.15)).clamp(0.0, 1.0) * 10_000.0).round() as usize)
    }

    /// Appends the heatmap as a JSON array of rows.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let table = cell_texts();
        let width = self.width as usize;
        out.reserve(self.width as usize * self.height as usize * 7 + self.height as usize * 3 + 2);
        out.push(b'[');
        for (i, n) in self.cells().enumerate() {
            let column = i % width;
            if column == 0 {
                if i > 0 {
                    out.extend_from_slice(b"],");
                }
                out.push(b'[');
            } else {
                out.push(b',');
            }
            out.extend_from_slice(table[n.min(10_000)].as_bytes());
        }
        if width > 0 && self.height > 0 {
            out.push(b']');
        }
        out.push(b']');
    }
}

/// The JSON text of `n / 10 000` for n = 0…10 000.
fn cell_texts() -> &'static [String] {
    static TABLE: OnceLock<Vec<String>> = OnceLock::new();
    TABLE
        .get_or_init(|| (0..=10_000u32).map(|n| serde_json::Value::from(f64::from(n) / 10_000.0).to_string()).collect())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn text(h: &Heatmap) -> Vec<u8> {
        let mut out = Vec::new();
        h.write_json(&mut out);
        out
    }

    #[test]
    fn the_text_is_what_serializing_the_rounded_floats_gives() {
        let rng = SplitMix64::new(99);
        let h = Heatmap::new(8, 8, 0.62, &rng);
        // The documented draw: row by row, `round4(clamp(p + u, 0, 1))`.
        let mut r = rng.clone();
        let expected: Vec<Vec<f64>> = (0..8)
            .map(|_| {
                (0..8).map(|_| ((0.62 + r.range(-0.15, 0.15)).clamp(0.0, 1.0) * 10_000.0).round() / 10_000.0).collect()
            })
            .collect();
        assert_eq!(String::from_utf8(text(&h)).expect("utf-8"), serde_json::to_string(&expected).expect("json"));
    }

    #[test]
    fn cells_at_the_edges_print_like_serde_json() {
        let table = cell_texts();
        assert_eq!((table[0].as_str(), table[10_000].as_str()), ("0.0", "1.0"));
        assert_eq!((table[5_000].as_str(), table[1_234].as_str(), table[7].as_str()), ("0.5", "0.1234", "0.0007"));
    }

    #[test]
    fn rows_and_columns_follow_height_and_width() {
        let h = Heatmap::new(5, 3, 0.5, &SplitMix64::new(1));
        let v: Value = serde_json::from_slice(&text(&h)).expect("valid JSON");
        let rows = v.as_array().expect("rows");
        assert_eq!(rows.len(), 3);
        assert!(rows.iter().all(|r| r.as_array().is_some_and(|r| r.len() == 5)));
        assert_eq!(text(&Heatmap::new(0, 0, 0.5, &SplitMix64::new(1))), b"[]");
    }

    #[test]
    fn sides_are_capped() {
        let h = Heatmap::new(100_000, 9000, 0.5, &SplitMix64::new(1));
        assert_eq!((h.width(), h.height()), (MAX_SIDE, MAX_SIDE));
    }

    #[test]
    fn a_4k_heatmap_serializes_to_2160_rows_of_3840_cells() {
        let h = Heatmap::new(3840, 2160, 0.3, &SplitMix64::new(7));
        let out = text(&h);
        assert!(out.starts_with(b"[[") && out.ends_with(b"]]"));
        let rows = out.windows(2).filter(|w| w == b"],").count() + 1;
        assert_eq!(rows, 2160);
        let separators = out.iter().filter(|b| **b == b',').count();
        assert_eq!(separators, 2160 * 3839 + 2159);
        // The same heatmap writes the same text.
        assert_eq!(out, text(&h));
        // Spot check: the first row parses and holds probabilities.
        let end = out.windows(2).position(|w| w == b"],").expect("a row end");
        let first: Vec<f64> = serde_json::from_slice(&out[1..=end]).expect("first row");
        assert_eq!(first.len(), 3840);
        assert!(first.iter().all(|x| (0.0..=1.0).contains(x)));
    }
}
