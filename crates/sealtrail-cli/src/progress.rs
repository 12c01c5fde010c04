//! How long runs report progress (backup, restore, verify, archive write, retention plan):
//! a progress bar on a terminal; otherwise one plain line per step on stderr, with what it
//! did and how long it took, so logs of scheduled runs say something.

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressStyle};
use sealtrail_backup::{Progress, Unit};

/// A progress bar on a terminal; otherwise one plain line per step on stderr.
pub struct Report {
    bar: Option<ProgressBar>,
    terminal: bool,
    /// Off a terminal: the step running, since when, its unit and work done, for the
    /// line that ends it.
    plain: Option<(String, std::time::Instant, Unit, u64)>,
}

impl Report {
    /// Bars on a terminal, lines otherwise (stderr).
    pub fn new() -> Self {
        Self {
            bar: None,
            terminal: std::io::stderr().is_terminal(),
            plain: None,
        }
    }
}

impl Progress for Report {
    fn begin(&mut self, step: &str, total: u64, unit: Unit) {
        if !self.terminal {
            self.plain = Some((step.to_owned(), std::time::Instant::now(), unit, 0));
            eprintln!("{step}");
            return;
        }
        // A step of unknown size (a PostgreSQL table copy) shows what is done, no bar.
        let template = match (unit, total) {
            (Unit::Bytes, 0) => "{spinner} {msg} {bytes} ({bytes_per_sec})",
            (Unit::Events, 0) => "{spinner} {msg} {pos} events ({per_sec})",
            (Unit::Bytes, _) => "{spinner} {msg} {bar:40} {bytes}/{total_bytes} ({bytes_per_sec})",
            (Unit::Events, _) => "{spinner} {msg} {bar:40} {pos}/{len} events ({per_sec})",
        };
        let bar = ProgressBar::new(total)
            .with_style(ProgressStyle::with_template(template).expect("the template is valid"));
        bar.set_message(step.to_owned());
        self.bar = Some(bar);
    }

    fn set(&mut self, done: u64, total: u64) {
        if let Some((_, _, _, so_far)) = &mut self.plain {
            *so_far = done;
        }
        if let Some(bar) = &self.bar {
            if total > 0 {
                bar.set_length(total);
            }
            bar.set_position(done);
        }
    }

    fn end(&mut self) {
        if let Some((step, since, unit, done)) = self.plain.take()
            && done > 0
        {
            let secs = since.elapsed().as_secs_f64();
            let unit = match unit {
                Unit::Bytes => "bytes",
                Unit::Events => "events",
            };
            eprintln!("{step}: {done} {unit} in {secs:.1}s");
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
