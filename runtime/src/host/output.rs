//! Guest stdout and stderr: never inherited. Each line becomes a tracing event with target
//! `connector`; lines are truncated and the total is bounded, so a guest cannot flood the
//! host's logs. The last lines of stderr are kept, so a trap can be reported with the
//! guest's own panic message.
//!
//! Writes are handled synchronously inside the guest's call: nothing is buffered in a
//! background task that a trap could cut short.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

const MAX_LINE: usize = 4096;
const TAIL_LINES: usize = 8;

#[derive(Debug)]
struct Budget {
    lines_left: u64,
    dropped: u64,
    partial: Vec<u8>,
    tail: VecDeque<String>,
}

/// A stdout/stderr sink for one run; clones share the same budget and tail.
#[derive(Debug, Clone)]
pub(crate) struct GuestOutput {
    stream: &'static str,
    budget: Arc<Mutex<Budget>>,
    /// Nanoseconds the host spent handling this output, charged to the run's `cpu_secs`.
    host_cpu: Arc<std::sync::atomic::AtomicU64>,
}

impl GuestOutput {
    pub(crate) fn new(
        stream: &'static str,
        max_lines: u64,
        host_cpu: Arc<std::sync::atomic::AtomicU64>,
    ) -> Self {
        let budget = Budget {
            lines_left: max_lines,
            dropped: 0,
            partial: Vec::new(),
            tail: VecDeque::new(),
        };
        GuestOutput {
            stream,
            budget: Arc::new(Mutex::new(budget)),
            host_cpu,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Budget> {
        self.budget.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write_bytes(&self, buf: &[u8]) {
        let started = std::time::Instant::now();
        self.write_lines(buf);
        self.host_cpu.fetch_add(
            started.elapsed().as_nanos() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    fn write_lines(&self, buf: &[u8]) {
        let mut b = self.lock();
        for chunk in buf.split_inclusive(|c| *c == b'\n') {
            if b.partial.len() < MAX_LINE {
                let room = MAX_LINE - b.partial.len();
                b.partial.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            if chunk.ends_with(b"\n") {
                let line = std::mem::take(&mut b.partial);
                self.emit_line(&mut b, &line);
            }
        }
    }

    fn emit_line(&self, b: &mut Budget, line: &[u8]) {
        let text = crate::names::sanitized(String::from_utf8_lossy(line).trim_end(), MAX_LINE);
        if b.tail.len() == TAIL_LINES {
            b.tail.pop_front();
        }
        b.tail.push_back(text.clone());
        if b.lines_left == 0 {
            b.dropped += 1;
            return;
        }
        b.lines_left -= 1;
        tracing::info!(target: "connector", stream = self.stream, "{text}");
    }

    /// Lines past the budget, dropped from the log.
    pub(crate) fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// The last lines written (including an unterminated one), oldest first.
    pub(crate) fn tail(&self) -> Vec<String> {
        let b = self.lock();
        let mut lines: Vec<String> = b.tail.iter().cloned().collect();
        if !b.partial.is_empty() {
            lines.push(crate::names::sanitized(
                String::from_utf8_lossy(&b.partial).trim_end(),
                MAX_LINE,
            ));
        }
        lines
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        if self.dropped > 0 {
            tracing::warn!(target: "connector", dropped_lines = self.dropped, "guest output over the log limit was dropped");
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.write_bytes(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_bounded_and_the_tail_is_kept() {
        let out = GuestOutput::new("stderr", 2, Arc::default());
        out.write_bytes(b"one\ntwo\nthr");
        out.write_bytes(b"ee\nfour\npartial");
        assert_eq!(
            out.lock().dropped,
            2,
            "lines past the budget are dropped from the log"
        );
        assert_eq!(
            out.tail(),
            ["one", "two", "three", "four", "partial"],
            "but kept in the tail"
        );
        let long = vec![b'x'; MAX_LINE * 3];
        out.write_bytes(&long);
        out.write_bytes(b"\n");
        assert_eq!(out.tail().last().unwrap().len(), MAX_LINE);
    }
}
