//! Structured logs: each `tracing` event becomes one JSON line on the console, which Workers
//! Logs and `wrangler tail` index by field.

use std::io::{self, Write};
use std::sync::Once;
use tracing_subscriber::fmt::MakeWriter;

/// Buffers one formatted event and hands it to `console.log` when dropped.
#[derive(Default)]
pub struct ConsoleLine(Vec<u8>);

impl Write for ConsoleLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ConsoleLine {
    fn drop(&mut self) {
        let line = String::from_utf8_lossy(&self.0);
        let line = line.trim_end();
        if !line.is_empty() {
            worker::console_log!("{line}");
        }
    }
}

struct Console;

impl<'a> MakeWriter<'a> for Console {
    type Writer = ConsoleLine;

    fn make_writer(&'a self) -> Self::Writer {
        ConsoleLine::default()
    }
}

/// Installs the JSON console subscriber once per isolate.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_target(false)
            .without_time() // std has no clock on wasm32; Workers Logs stamps each line.
            .with_writer(Console)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}
