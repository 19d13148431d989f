//! The progress bar of `vault unmount`: pending bytes being uploaded.
//!
//! It appears only when the upload takes more than a moment and stderr is
//! a terminal (indicatif draws nothing otherwise), so quick unmounts and
//! scripts see no bar. The total is the largest pending amount seen, since
//! changes may still arrive while it runs.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Shown only after this long.
pub const SHOW_AFTER: Duration = Duration::from_millis(500);

/// Upload progress of an unmount.
#[derive(Debug)]
pub struct UnmountProgress {
    started: Instant,
    total: u64,
    bar: Option<ProgressBar>,
}

impl Default for UnmountProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl UnmountProgress {
    /// Starts timing.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            total: 0,
            bar: None,
        }
    }

    /// One progress report: `files` and `bytes` still pending.
    pub fn update(&mut self, files: u64, bytes: u64) {
        self.total = self.total.max(bytes);
        if self.bar.is_none() && bytes > 0 && self.started.elapsed() >= SHOW_AFTER {
            let style = ProgressStyle::with_template(
                "Uploading {bar:30} {bytes}/{total_bytes} ({msg}) {bytes_per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            let bar = ProgressBar::new(self.total).with_style(style);
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_length(self.total);
            bar.set_position(self.total - bytes.min(self.total));
            bar.set_message(format!("{files} file(s) left"));
        }
    }

    /// Removes the bar.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
