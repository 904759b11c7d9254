//! Logging: `proxy_log`, and WASI stdout/stderr as Envoy logs them.

use super::state::HostState;
use crate::records::LogRecord;
use crate::types::{LogLevel, Status};

impl HostState {
    pub(crate) fn log(&mut self, level: u32, message: &[u8]) -> Result<(), Status> {
        let level = LogLevel::from_u32(level).ok_or(Status::BadArgument)?;
        self.push_log(level, message);
        Ok(())
    }

    pub(crate) fn push_log(&mut self, level: LogLevel, message: &[u8]) {
        if level < self.settings.log_level {
            return;
        }
        self.logs.push(LogRecord {
            level,
            message: String::from_utf8_lossy(message).into_owned(),
            context_id: self.effective,
        });
    }

    /// WASI stdout/stderr: Envoy logs each write as one line (info for
    /// stdout, error for stderr), without its final newline.
    pub(crate) fn write_stdio(&mut self, fd: u32, data: &[u8]) {
        let level = if fd == 1 {
            LogLevel::Info
        } else {
            LogLevel::Error
        };
        self.call_output.extend_from_slice(data);
        let line = data.strip_suffix(b"\n").unwrap_or(data);
        if !line.is_empty() {
            self.call_output_logs.push(self.logs.len());
            self.push_log(level, line);
        }
    }
}
