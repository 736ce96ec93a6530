//! A bound on WebSocket messages from clients. The Engine.IO server (engineioxide) builds its
//! WebSockets with tungstenite's defaults, 64 MiB per message and 16 MiB per frame, and offers no
//! setting for them, while the contract caps messages at 1 MB (§7.4, as polling does). So the
//! connection's byte stream is watched instead: once the server has switched the connection to
//! another protocol (`101`), the frame headers coming from the client are followed and the
//! connection is failed as soon as a message passes the bound, before it is buffered.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Follows WebSocket frames (RFC 6455 §5.2) and sums each message's payload.
#[derive(Debug)]
pub struct Frames {
    limit: u64,
    /// Bytes of the current frame header read so far.
    header: Vec<u8>,
    /// Payload bytes of the current frame still to skip.
    payload_left: u64,
    /// Payload of the current (possibly fragmented) data message so far.
    message: u64,
}

impl Frames {
    pub fn new(limit: u64) -> Self {
        Self { limit, header: Vec::with_capacity(14), payload_left: 0, message: 0 }
    }

    /// The header length once its first two bytes are known.
    fn header_len(b: &[u8]) -> usize {
        let masked = b[1] & 0x80 != 0;
        let extra = match b[1] & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + extra + if masked { 4 } else { 0 }
    }

    fn payload_len(b: &[u8]) -> u64 {
        match b[1] & 0x7F {
            126 => u64::from(u16::from_be_bytes([b[2], b[3]])),
            127 => u64::from_be_bytes([b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9]]),
            n => u64::from(n),
        }
    }

    /// Feeds bytes read from the client; an error once a message is over the limit.
    pub fn feed(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.payload_left > 0 {
                let skip = self.payload_left.min(data.len() as u64);
                self.payload_left -= skip;
                data = &data[skip as usize..];
                continue;
            }
            let need = if self.header.len() < 2 { 2 } else { Self::header_len(&self.header) };
            let take = (need - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.header.len() < 2 || self.header.len() < Self::header_len(&self.header) {
                continue;
            }
            let opcode = self.header[0] & 0x0F;
            let len = Self::payload_len(&self.header);
            // Control frames (close, ping, pong) are at most 125 bytes and interleave freely.
            if opcode < 0x8 {
                if opcode != 0 {
                    self.message = 0;
                }
                self.message = self.message.saturating_add(len);
                if self.message > self.limit {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "WebSocket message over the limit"));
                }
            }
            self.payload_left = len;
            self.header.clear();
        }
        Ok(())
    }
}

/// A connection's IO that starts following WebSocket frames once the server answered `101`.
pub struct Guarded<T> {
    inner: T,
    limit: u64,
    frames: Option<Frames>,
}

impl<T> Guarded<T> {
    pub fn new(inner: T, limit: u64) -> Self {
        Self { inner, limit, frames: None }
    }

    fn on_write(&mut self, buf: &[u8]) {
        if self.frames.is_none() && buf.starts_with(b"HTTP/1.1 101 ") {
            self.frames = Some(Frames::new(self.limit));
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if let Some(frames) = &mut this.frames {
                    frames.feed(&buf.filled()[before..])?;
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.on_write(buf);
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0)
            && let Some(first) = bufs.iter().find(|b| !b.is_empty())
        {
            this.on_write(first);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::Frames;

    /// A client frame (masked) with `len` payload bytes.
    fn frame(fin: bool, opcode: u8, len: usize) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        match len {
            0..=125 => f.push(0x80 | len as u8),
            126..=65535 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&[1, 2, 3, 4]);
        f.extend(std::iter::repeat_n(b'x', len));
        f
    }

    fn feed_in(frames: &mut Frames, bytes: &[u8], chunk: usize) -> std::io::Result<()> {
        bytes.chunks(chunk).try_for_each(|c| frames.feed(c))
    }

    #[test]
    fn messages_up_to_the_limit_pass_in_any_chunking() {
        let mut stream = frame(true, 1, 1000);
        stream.extend(frame(true, 9, 4));
        stream.extend(frame(false, 2, 600));
        stream.extend(frame(true, 0, 400));
        stream.extend(frame(true, 1, 70_000));
        for chunk in [1, 3, 64, 5000, stream.len()] {
            assert!(feed_in(&mut Frames::new(70_000), &stream, chunk).is_ok(), "chunk {chunk}");
        }
    }

    #[test]
    fn a_message_over_the_limit_fails_from_its_header() {
        let big = frame(true, 1, 2_000_000);
        let mut frames = Frames::new(1_000_000);
        assert!(frames.feed(&big[..20]).is_err());
        // Also when it is sent in fragments, each under the limit.
        let mut stream = frame(false, 1, 600_000);
        stream.extend(frame(true, 9, 0));
        stream.extend(frame(true, 0, 600_000));
        assert!(feed_in(&mut Frames::new(1_000_000), &stream, 4096).is_err());
    }
}
