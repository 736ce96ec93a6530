//! A TCP listener whose connections a handler can kill, for the `drop` failure mode (§9.7):
//! "reads the request, then closes the connection without a response".
//!
//! axum gives handlers no access to the socket, so every accepted stream is wrapped with a shared
//! [`ConnKill`] switch that reaches handlers through `ConnectInfo`. Once flipped, reads and writes
//! fail; hyper, which polls the read side while a request is in flight, then abandons the
//! connection without writing a response, and the socket is closed.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Default)]
struct Switch {
    killed: AtomicBool,
    read_waker: AtomicWaker,
    write_waker: AtomicWaker,
}

/// Handle on one connection's kill switch, available to handlers as `ConnectInfo<ConnKill>`.
#[derive(Debug, Clone, Default)]
pub struct ConnKill(Arc<Switch>);

impl ConnKill {
    /// Makes every further read and write on the connection fail, so it closes unanswered.
    pub fn kill(&self) {
        self.0.killed.store(true, Ordering::SeqCst);
        self.0.read_waker.wake();
        self.0.write_waker.wake();
    }

    fn killed(&self) -> bool {
        self.0.killed.load(Ordering::SeqCst)
    }
}

fn killed_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "connection dropped by the ML stand-in")
}

/// An accepted TCP stream with a kill switch.
#[derive(Debug)]
pub struct KillableStream {
    inner: TcpStream,
    kill: ConnKill,
}

impl AsyncRead for KillableStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.kill.0.read_waker.register(cx.waker());
        if this.kill.killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.kill.0.write_waker.register(cx.waker());
        if this.kill.killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.kill.0.write_waker.register(cx.waker());
        if this.kill.killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.kill.killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A [`TcpListener`] producing [`KillableStream`]s.
#[derive(Debug)]
pub struct KillableListener {
    inner: TcpListener,
}

impl KillableListener {
    pub fn new(inner: TcpListener) -> Self {
        Self { inner }
    }
}

impl Listener for KillableListener {
    type Io = KillableStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                    }
                    let io = KillableStream { inner: stream, kill: ConnKill::default() };
                    return (io, addr);
                }
                // Per-connection errors (reset before accept) and resource exhaustion alike:
                // log and back off briefly instead of spinning.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl Connected<IncomingStream<'_, KillableListener>> for ConnKill {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        stream.io().kill.clone()
    }
}
