//! Guest stdout and stderr: never inherited. Each line becomes a tracing event with target
//! `connector`; lines are truncated and the total is bounded, so a guest cannot flood the
//! host's logs.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

const MAX_LINE: usize = 4096;

#[derive(Debug)]
struct Budget {
    lines_left: u64,
    dropped: u64,
    partial: Vec<u8>,
}

/// A stdout/stderr sink for one run.
#[derive(Debug, Clone)]
pub(crate) struct GuestOutput {
    stream: &'static str,
    budget: Arc<Mutex<Budget>>,
}

impl GuestOutput {
    pub(crate) fn new(stream: &'static str, max_lines: u64) -> Self {
        GuestOutput { stream, budget: Arc::new(Mutex::new(Budget { lines_left: max_lines, dropped: 0, partial: Vec::new() })) }
    }

    fn write(&self, buf: &[u8]) {
        let mut b = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        for chunk in buf.split_inclusive(|c| *c == b'\n') {
            let complete = chunk.ends_with(b"\n");
            if b.partial.len() < MAX_LINE {
                let room = MAX_LINE - b.partial.len();
                b.partial.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            if complete {
                let line = std::mem::take(&mut b.partial);
                emit_line(self.stream, &mut b, &line);
            }
        }
    }

    /// Lines dropped because the budget was spent.
    #[allow(dead_code)]
    pub(crate) fn dropped(&self) -> u64 {
        self.budget.lock().map(|b| b.dropped).unwrap_or(0)
    }
}

fn emit_line(stream: &str, b: &mut Budget, line: &[u8]) {
    if b.lines_left == 0 {
        b.dropped += 1;
        return;
    }
    b.lines_left -= 1;
    let text = String::from_utf8_lossy(line);
    tracing::info!(target: "connector", stream, "{}", text.trim_end());
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
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.write(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
