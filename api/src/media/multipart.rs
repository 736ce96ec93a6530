//! The multipart body of an upload, with the bounds `multer` (and so axum's `Multipart`) lacks.
//!
//! `multer` reads a part's headers until it finds the blank line that ends them, rescanning its
//! whole buffer on every chunk: one endless header costs memory without bound and quadratic time.
//! [`FramingGuard`] watches the raw body for the part delimiters and fails the stream as soon as
//! a part's headers (or the preamble, or the epilogue) pass [`PART_HEADER_LIMIT`]. The whole body
//! is bounded by the upload limit plus [`BODY_MARGIN`] (checked against `Content-Length` first, then
//! while reading); the text fields are bounded by the upload handler. An upload must also keep a
//! minimum average rate ([`MIN_RATE`] after [`RATE_GRACE`]): the server's body timeout cuts a body
//! that stops, this cuts one that trickles.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{FromRequest, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use bytes::Bytes;
use futures::Stream;
use memchr::memmem::Finder;

use crate::state::AppState;

/// Longest accepted part header block (all of a part's header lines), and longest preamble and
/// epilogue. Browsers send a few hundred bytes.
pub const PART_HEADER_LIMIT: usize = 8 * 1024;
/// What a body may carry besides the file: part headers, the description, ignored text fields.
pub const BODY_MARGIN: u64 = 256 * 1024;

/// Slowest accepted average upload rate, in bytes per second, once [`RATE_GRACE`] has passed.
pub const MIN_RATE: u64 = 4 * 1024;
/// How long an upload may run before its average rate is checked.
pub const RATE_GRACE: Duration = Duration::from_secs(30);

/// A part's headers, the preamble or the epilogue passed [`PART_HEADER_LIMIT`].
#[derive(Debug, thiserror::Error)]
#[error("multipart headers longer than {PART_HEADER_LIMIT} bytes")]
pub struct HeadersTooLong;

/// The body arrives slower than [`MIN_RATE`] on average.
#[derive(Debug, thiserror::Error)]
#[error("upload slower than {MIN_RATE} bytes per second")]
pub struct TooSlow;

/// The average rate of a body so far.
struct Pace {
    started: Instant,
    bytes: u64,
}

impl Pace {
    fn new(started: Instant) -> Self {
        Self { started, bytes: 0 }
    }

    fn add(&mut self, bytes: usize, now: Instant) -> Result<(), TooSlow> {
        self.bytes += bytes as u64;
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed > RATE_GRACE && u128::from(self.bytes) * 1000 < u128::from(MIN_RATE) * elapsed.as_millis() {
            return Err(TooSlow);
        }
        Ok(())
    }
}

/// Why a multipart body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyProblem {
    /// The body is larger than the upload limit plus [`BODY_MARGIN`].
    TooLarge,
    /// Malformed, cut short, over a framing bound, or too slow.
    Malformed,
}

impl BodyProblem {
    pub fn of(e: &multer::Error) -> Self {
        match e {
            multer::Error::StreamSizeExceeded { .. } => Self::TooLarge,
            _ => Self::Malformed,
        }
    }
}

/// The upload's multipart reader; `None` when the request is not `multipart/form-data` with a
/// boundary. A body declared larger than the bound is refused before it is read.
pub struct UploadBody(pub Result<multer::Multipart<'static>, BodyProblem>);

impl FromRequest<AppState> for UploadBody {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bound = state.config.max_upload_bytes.saturating_add(BODY_MARGIN);
        Ok(Self(open(req, bound)))
    }
}

fn open(req: Request, bound: u64) -> Result<multer::Multipart<'static>, BodyProblem> {
    let boundary = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| multer::parse_boundary(ct).ok())
        .ok_or(BodyProblem::Malformed)?;
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > bound) {
        return Err(BodyProblem::TooLarge);
    }
    let stream = FramingGuard::new(req.into_body().into_data_stream(), &boundary);
    let constraints = multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(bound));
    Ok(multer::Multipart::with_constraints(stream, boundary, constraints))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Looking for a delimiter: in the preamble (bounded) or in a part's data (not bounded).
    Delimiter { bounded: bool },
    /// After a delimiter: the part's headers, up to the blank line (or the epilogue).
    Headers,
}

/// The framing scanner behind [`FramingGuard`], separate from the stream for testing.
struct Framing {
    delimiter: Finder<'static>,
    blank_line: Finder<'static>,
    phase: Phase,
    /// Bytes of the current bounded phase seen so far.
    seen: usize,
    /// The last bytes of the current phase, shorter than its pattern: a pattern split between two
    /// chunks is found through them.
    tail: Vec<u8>,
}

impl Framing {
    fn new(boundary: &str) -> Self {
        Self {
            delimiter: Finder::new(format!("\r\n--{boundary}").as_bytes()).into_owned(),
            blank_line: Finder::new(b"\r\n\r\n").into_owned(),
            phase: Phase::Delimiter { bounded: true },
            seen: 0,
            // The first delimiter needs no line break before it.
            tail: b"\r\n".to_vec(),
        }
    }

    fn feed(&mut self, mut chunk: &[u8]) -> Result<(), HeadersTooLong> {
        while !chunk.is_empty() {
            let (finder, bounded) = match self.phase {
                Phase::Delimiter { bounded } => (&self.delimiter, bounded),
                Phase::Headers => (&self.blank_line, true),
            };
            let needle_len = finder.needle().len();
            match find_after_tail(finder, &self.tail, chunk) {
                Some(end) => {
                    if bounded && self.seen + end > PART_HEADER_LIMIT {
                        return Err(HeadersTooLong);
                    }
                    chunk = &chunk[end..];
                    self.phase = match self.phase {
                        Phase::Delimiter { .. } => Phase::Headers,
                        Phase::Headers => Phase::Delimiter { bounded: false },
                    };
                    self.seen = 0;
                    self.tail.clear();
                }
                None => {
                    self.seen += chunk.len();
                    if bounded && self.seen > PART_HEADER_LIMIT {
                        return Err(HeadersTooLong);
                    }
                    let keep = needle_len - 1;
                    if chunk.len() >= keep {
                        self.tail.clear();
                        self.tail.extend_from_slice(&chunk[chunk.len() - keep..]);
                    } else {
                        self.tail.extend_from_slice(chunk);
                        let excess = self.tail.len().saturating_sub(keep);
                        self.tail.drain(..excess);
                    }
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// Where the pattern ends in `chunk`, looking also at a pattern that starts in `tail`.
fn find_after_tail(finder: &Finder<'_>, tail: &[u8], chunk: &[u8]) -> Option<usize> {
    let n = finder.needle().len();
    if !tail.is_empty() {
        let mut joint = tail.to_vec();
        joint.extend_from_slice(&chunk[..chunk.len().min(n - 1)]);
        if let Some(i) = finder.find(&joint) {
            return Some(i + n - tail.len());
        }
    }
    finder.find(chunk).map(|i| i + n)
}

/// The request body, failed as soon as the multipart framing passes a bound.
struct FramingGuard<S> {
    inner: S,
    framing: Framing,
    pace: Pace,
    failed: bool,
}

impl<S> FramingGuard<S> {
    fn new(inner: S, boundary: &str) -> Self {
        Self { inner, framing: Framing::new(boundary), pace: Pace::new(Instant::now()), failed: false }
    }
}

impl<S> Stream for FramingGuard<S>
where
    S: Stream<Item = Result<Bytes, axum::Error>> + Unpin,
{
    type Item = Result<Bytes, Box<dyn std::error::Error + Send + Sync>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let this = &mut *self;
                let checked = match this.framing.feed(&chunk) {
                    Ok(()) => this.pace.add(chunk.len(), Instant::now()).map_err(|e| Box::new(e) as _),
                    Err(e) => Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
                };
                match checked {
                    Ok(()) => Poll::Ready(Some(Ok(chunk))),
                    Err(e) => {
                        this.failed = true;
                        Poll::Ready(Some(Err(e)))
                    }
                }
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_in_chunks(body: &[u8], size: usize) -> Result<(), HeadersTooLong> {
        let mut framing = Framing::new("XyZ");
        body.chunks(size).try_for_each(|c| framing.feed(c))
    }

    fn part(headers: &str, data: &[u8]) -> Vec<u8> {
        let mut p = format!("--XyZ\r\n{headers}\r\n\r\n").into_bytes();
        p.extend_from_slice(data);
        p.extend_from_slice(b"\r\n");
        p
    }

    #[test]
    fn ordinary_bodies_pass_in_any_chunking() {
        let mut body = part("Content-Disposition: form-data; name=\"description\"", b"hello");
        body.extend(part(
            "Content-Disposition: form-data; name=\"media\"; filename=\"a.png\"\r\nContent-Type: image/png",
            &[7u8; 100_000],
        ));
        body.extend_from_slice(b"--XyZ--\r\n");
        for size in [1, 2, 3, 7, 64, 4096, body.len()] {
            assert!(feed_in_chunks(&body, size).is_ok(), "chunk size {size}");
        }
    }

    #[test]
    fn data_that_looks_like_headers_is_not_bounded() {
        let data = "x\r\n".repeat(20_000);
        let mut body = part("Content-Disposition: form-data; name=\"a\"", data.as_bytes());
        body.extend_from_slice(b"--XyZ--\r\n");
        assert!(feed_in_chunks(&body, 1000).is_ok());
    }

    #[test]
    fn a_long_part_header_fails_once_it_passes_the_bound_whatever_the_chunking() {
        let long = format!("Content-Disposition: form-data; name=\"{}\"", "a".repeat(PART_HEADER_LIMIT));
        let body = part(&long, b"x");
        for size in [1, 5, 1000, body.len()] {
            assert!(feed_in_chunks(&body, size).is_err(), "chunk size {size}");
        }
        // Also the second part's headers.
        let mut body = part("Content-Disposition: form-data; name=\"a\"", b"x");
        body.extend(part(&long, b"y"));
        assert!(feed_in_chunks(&body, 777).is_err());
        // And headers that never end, in a stream that does not either.
        let mut framing = Framing::new("XyZ");
        framing.feed(b"--XyZ\r\nContent-Disposition: form-data").expect("short so far");
        let err = (0..100).try_for_each(|_| framing.feed(&[b'a'; 100]));
        assert!(err.is_err());
    }

    #[test]
    fn an_upload_below_the_minimum_average_rate_fails_after_the_grace_period() {
        let t0 = Instant::now();
        let mut pace = Pace::new(t0);
        // Slow at first is fine…
        assert!(pace.add(10, t0 + Duration::from_secs(20)).is_ok());
        // …but not once the grace period is over and the average is still below the minimum.
        assert!(pace.add(10, t0 + RATE_GRACE + Duration::from_secs(1)).is_err());
        let mut fast = Pace::new(t0);
        assert!(fast.add(10 << 20, t0 + Duration::from_secs(5)).is_ok());
        assert!(fast.add(1, t0 + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn a_long_preamble_fails() {
        let mut body = vec![b'p'; PART_HEADER_LIMIT + 1];
        body.extend(part("Content-Disposition: form-data; name=\"a\"", b"x"));
        assert!(feed_in_chunks(&body, 100).is_err());
    }
}
