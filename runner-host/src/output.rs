//! A capped in-memory pipe for the guest's stdout and stderr.
//!
//! wasmtime-wasi's `MemoryOutputPipe` traps when the guest writes past its capacity
//! but does not let the host tell that trap from any other. This pipe records that
//! the cap was hit, keeps what fit, and traps the guest at once, so a guest flooding
//! its output stops immediately and the run reports `OUTPUT_LIMIT`.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

#[derive(Debug, Default)]
struct Buffer {
    bytes: Vec<u8>,
    /// Bytes the guest tried to write, including those refused.
    attempted: u64,
    overflowed: bool,
}

/// An output stream holding at most `capacity` bytes. Clones share the buffer.
#[derive(Debug, Clone)]
pub struct CappedOutput {
    capacity: usize,
    buffer: Arc<Mutex<Buffer>>,
}

impl CappedOutput {
    pub fn new(capacity: usize) -> Self {
        CappedOutput { capacity, buffer: Arc::default() }
    }

    fn lock(&self) -> MutexGuard<'_, Buffer> {
        // A panic while holding this lock cannot leave the buffer inconsistent.
        self.buffer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What the guest wrote, up to the cap.
    pub fn contents(&self) -> Vec<u8> {
        self.lock().bytes.clone()
    }

    /// Whether the guest tried to write past the cap.
    pub fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// Bytes the guest tried to write.
    pub fn attempted(&self) -> u64 {
        self.lock().attempted
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Appends what fits; false when `data` did not fit whole.
    fn append(&self, data: &[u8]) -> bool {
        let mut buffer = self.lock();
        buffer.attempted += data.len() as u64;
        let room = self.capacity.saturating_sub(buffer.bytes.len());
        let take = data.len().min(room);
        buffer.bytes.extend_from_slice(&data[..take]);
        if take < data.len() {
            buffer.overflowed = true;
        }
        take == data.len()
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if self.append(&bytes) {
            Ok(())
        } else {
            Err(StreamError::trap(&format!("the guest wrote more than the {}-byte output cap", self.capacity)))
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always offer room: a write past the cap traps in `write`, rather than the
        // guest spinning on a full pipe until its deadline.
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {}
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for CappedOutput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if self.append(buf) {
            Poll::Ready(Ok(buf.len()))
        } else {
            Poll::Ready(Err(std::io::Error::other("output cap exceeded")))
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_fits_and_flags_overflow() {
        let mut out = CappedOutput::new(5);
        assert!(out.write(Bytes::from_static(b"abc")).is_ok());
        assert!(!out.overflowed());
        let err = out.write(Bytes::from_static(b"defg")).unwrap_err();
        assert!(matches!(err, StreamError::Trap(_)));
        assert!(out.overflowed());
        assert_eq!(out.contents(), b"abcde");
        assert_eq!(out.attempted(), 7);
    }
}
