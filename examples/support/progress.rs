//! A progress bar on stderr for the extract examples, drawn only when stderr is a
//! terminal (never into logs or pipes): a percentage when the source estimates its rows,
//! else a running count.

use std::io::IsTerminal;
use tributary::{PipelineBuilder, Progress};

/// The bar, to clear once the run has ended (before the report is printed).
pub struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    /// Clear the bar from the terminal.
    pub fn done(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// `builder` with a progress bar on stderr, if stderr is a terminal.
pub fn with_bar(builder: PipelineBuilder) -> (PipelineBuilder, Bar) {
    if !std::io::stderr().is_terminal() {
        return (builder, Bar(None));
    }
    let bar = indicatif::ProgressBar::new_spinner();
    let handle = bar.clone();
    let counted =
        indicatif::ProgressStyle::with_template("{spinner} {human_pos} rows, {msg} [{elapsed}]")
            .expect("a valid template");
    let estimated = indicatif::ProgressStyle::with_template(
        "{bar:24} {percent:>3}% {human_pos}/~{human_len} rows, {msg} [{elapsed}]",
    )
    .expect("a valid template");
    bar.set_style(counted);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let builder = builder.on_progress(move |p: &Progress| {
        if let Some(total) = p.rows_estimated
            && bar.length().is_none()
        {
            // Estimates can be low: the bar's end grows with the count.
            bar.set_length(total.max(p.rows_extracted));
            bar.set_style(estimated.clone());
        }
        if let Some(len) = bar.length()
            && p.rows_extracted > len
        {
            bar.set_length(p.rows_extracted);
        }
        bar.set_position(p.rows_extracted);
        bar.set_message(format!("{} committed", p.rows_committed));
    });
    (builder, Bar(Some(handle)))
}
