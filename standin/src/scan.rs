//! Streaming scan of uploaded bytes for `STANDIN:` markers (§9.7).
//!
//! Markers may straddle chunk boundaries, so the scanner keeps the last few bytes of the previous
//! chunk; a marker is recorded once the byte after its token is seen (or at end of file).

use crate::failure::Marker;

const PREFIX: &[u8] = b"standin";
/// Longest token (`<mode>@<MODEL>`) considered; longer runs are not markers.
const MAX_TOKEN: usize = 160;
/// Bytes kept between chunks: enough for `STANDIN:` plus a maximal token.
const TAIL: usize = PREFIX.len() + 1 + MAX_TOKEN;
/// Markers kept per upload; a file full of markers should not grow memory without bound.
const MAX_MARKERS: usize = 64;

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@')
}

/// Finds markers in a byte stream fed chunk by chunk.
#[derive(Debug, Default)]
pub struct MarkerScanner {
    /// Tail of the previous data followed by the current chunk.
    buf: Vec<u8>,
    markers: Vec<Marker>,
}

impl MarkerScanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Scans the next chunk of the stream.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
        self.scan(false);
        if self.buf.len() > TAIL {
            let excess = self.buf.len() - TAIL;
            self.buf.drain(..excess);
        }
    }

    /// Ends the stream and returns the markers in file order.
    pub fn finish(mut self) -> Vec<Marker> {
        self.scan(true);
        self.markers
    }

    fn scan(&mut self, at_eof: bool) {
        let buf = &self.buf;
        for colon in memchr::memchr_iter(b':', buf) {
            if colon < PREFIX.len() || !buf[colon - PREFIX.len()..colon].eq_ignore_ascii_case(PREFIX) {
                continue;
            }
            let start = colon + 1;
            let len = buf[start..].iter().take(MAX_TOKEN + 1).take_while(|b| is_token_byte(**b)).count();
            let complete = start + len < buf.len() || at_eof;
            if len == 0 || len > MAX_TOKEN || !complete {
                continue;
            }
            let Ok(token) = std::str::from_utf8(&buf[start..start + len]) else {
                continue;
            };
            if let Some(marker) = Marker::parse(token)
                && !self.markers.contains(&marker)
                && self.markers.len() < MAX_MARKERS
            {
                self.markers.push(marker);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::{FailureMode, MarkerKind, Verdict};

    fn scan_in_chunks(data: &[u8], chunk: usize) -> Vec<Marker> {
        let mut scanner = MarkerScanner::new();
        for part in data.chunks(chunk) {
            scanner.feed(part);
        }
        scanner.finish()
    }

    #[test]
    fn finds_markers_whatever_the_chunking() {
        let mut data = vec![0u8; 1000];
        data.extend_from_slice(b"xx standin:FAKE@SIGLIP-LSTM-V4\n");
        data.extend(std::iter::repeat_n(7u8, 333));
        data.extend_from_slice(b"STANDIN:flaky-2");
        for chunk in [1, 2, 3, 7, 64, 1000, 5000] {
            let markers = scan_in_chunks(&data, chunk);
            assert_eq!(
                markers,
                vec![
                    Marker { kind: MarkerKind::Verdict(Verdict::Fake), model: Some("SIGLIP-LSTM-V4".into()) },
                    Marker { kind: MarkerKind::Failure(FailureMode::Flaky(2)), model: None },
                ],
                "chunk size {chunk}"
            );
        }
    }

    #[test]
    fn ignores_unknown_and_overlong_tokens() {
        let mut data = b"STANDIN:teapot STANDIN: STANDIN:".to_vec();
        data.extend(std::iter::repeat_n(b'a', MAX_TOKEN + 5));
        data.extend_from_slice(b" STANDIN:real");
        let markers = scan_in_chunks(&data, 10);
        assert_eq!(markers.len(), 1);
        assert_eq!(markers[0].kind, MarkerKind::Verdict(Verdict::Real));
    }
}
