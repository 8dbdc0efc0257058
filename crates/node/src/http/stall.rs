//! A connection that is dropped when it stops making progress: a read or a write that stays
//! pending for longer than the stall timeout fails with `TimedOut`, so hyper closes the
//! connection and its slot is free again. Progress in either direction resets both clocks.
//!
//! The node itself may be the one that takes its time: the seed's `fetch` answers when the
//! file is in the share, however long the download lasts. While a handler that has read its
//! whole request works on the answer ([`Working::enter`]), the only read pending is hyper's
//! watch for the client hanging up, and that read is not a stall; a write that makes no
//! progress still is.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// How many requests of one connection have been read in full and are being answered: set
/// per connection as a request extension, entered by handlers that may take long.
#[derive(Debug, Clone, Default)]
pub struct Working(Arc<AtomicUsize>);

/// A handler at work; dropping it (the answer is ready, or the handler was cancelled) ends it.
pub struct AtWork(Arc<AtomicUsize>);

impl Working {
    /// Marks the connection as waiting on this node, not on the client, until the guard drops.
    pub fn enter(&self) -> AtWork {
        self.0.fetch_add(1, Ordering::SeqCst);
        AtWork(self.0.clone())
    }

    fn busy(&self) -> bool {
        self.0.load(Ordering::SeqCst) > 0
    }
}

impl Drop for AtWork {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A stream whose stalled reads and writes time out.
pub struct Stall<S> {
    inner: S,
    timeout: Duration,
    working: Working,
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
}

impl<S> Stall<S> {
    /// `working` is the connection's [`Working`], shared with its requests.
    pub fn new(inner: S, timeout: Duration, working: Working) -> Self {
        Stall {
            inner,
            timeout,
            working,
            read_timer: None,
            write_timer: None,
        }
    }
}

/// On `Pending`, starts the timer (if not running) and fails once it fires; on `Ready`, stops it.
fn watch<T>(
    timer: &mut Option<Pin<Box<Sleep>>>,
    timeout: Duration,
    cx: &mut Context<'_>,
    polled: Poll<io::Result<T>>,
) -> Poll<io::Result<T>> {
    match polled {
        Poll::Ready(result) => {
            *timer = None;
            Poll::Ready(result)
        }
        Poll::Pending => {
            let sleep = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
            match sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the connection made no progress"))),
                Poll::Pending => Poll::Pending,
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Stall<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if polled.is_pending() && this.working.busy() {
            // Waiting for the node's answer: the client owes nothing.
            this.read_timer = None;
            return Poll::Pending;
        }
        watch(&mut this.read_timer, this.timeout, cx, polled)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stall<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        watch(&mut this.write_timer, this.timeout, cx, polled)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        watch(&mut this.write_timer, this.timeout, cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        watch(&mut this.write_timer, this.timeout, cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
