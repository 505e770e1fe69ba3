//! A report a team can share: one self-contained HTML page with SVG charts (no scripts,
//! no external files) and a short Markdown summary to paste into chat.

use super::{DagSuccessRate, PipelineDaily, RuntimeTrend, ValidationDaily};
use crate::Result;
use crate::warehouse::{RunRecord, Warehouse};
use chrono::{DateTime, NaiveDate, Utc};
use std::fmt::Write;

/// The numbers behind the report.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Report {
    /// The title.
    pub title: String,
    /// When it was made.
    pub generated_at: DateTime<Utc>,
    /// DAG success rate per day.
    pub success: Vec<DagSuccessRate>,
    /// Average runtime per DAG per day.
    pub runtime: Vec<RuntimeTrend>,
    /// Validation volume and success rate per day.
    pub validation: Vec<ValidationDaily>,
    /// tributary's own runs per pipeline and day (`pipeline_run_history`).
    pub pipelines: Vec<PipelineDaily>,
    /// The latest failed runs of tributary's pipelines, newest first (at most 10).
    pub failed_runs: Vec<RunRecord>,
}

impl Warehouse {
    /// Gather the report's numbers from `dag_run_history`, `validation_run_history` and
    /// `pipeline_run_history`.
    pub async fn report(&self, title: &str) -> Result<Report> {
        let daily = self.dag_history_daily().await?;
        let failed_runs = self
            .run_history(None, 500)
            .await?
            .into_iter()
            .filter(|r| r.outcome == "failed")
            .take(10)
            .collect();
        Ok(Report {
            title: title.to_string(),
            generated_at: Utc::now(),
            success: super::models::success_rate(&daily),
            runtime: super::models::runtime_trend(&daily),
            validation: self.validation_daily().await?,
            pipelines: self.pipeline_daily().await?,
            failed_runs,
        })
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const COLORS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];
const W: f64 = 640.0;
const H: f64 = 240.0;
const PAD: f64 = 48.0;

/// A line chart: one series per name, x = dates, y from 0 to `y_max`.
fn line_chart(
    title: &str,
    series: &[(String, Vec<(NaiveDate, f64)>)],
    y_max: f64,
    y_label: &dyn Fn(f64) -> String,
) -> String {
    let dates: Vec<NaiveDate> = {
        let mut d: Vec<NaiveDate> = series
            .iter()
            .flat_map(|(_, pts)| pts.iter().map(|(d, _)| *d))
            .collect();
        d.sort();
        d.dedup();
        d
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<figure><figcaption>{}</figcaption><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}">"#,
        esc(title),
        esc(title)
    );
    if dates.is_empty() {
        svg.push_str(r##"<text x="50%" y="50%" text-anchor="middle" fill="#666">no data yet</text></svg></figure>"##);
        return svg;
    }
    let y_max = if y_max > 0.0 { y_max } else { 1.0 };
    let x = |d: &NaiveDate| {
        let i = dates.iter().position(|x| x == d).unwrap_or(0) as f64;
        if dates.len() == 1 {
            W / 2.0
        } else {
            PAD + i * (W - 2.0 * PAD) / (dates.len() - 1) as f64
        }
    };
    let y = |v: f64| H - PAD - (v / y_max).clamp(0.0, 1.0) * (H - 2.0 * PAD);
    // Axes and grid.
    for k in 0..=4 {
        let v = y_max * k as f64 / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{PAD}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end" fill="#444">{}</text>"##,
            W - PAD,
            y(v),
            y(v),
            PAD - 6.0,
            y(v) + 4.0,
            esc(&y_label(v))
        );
    }
    let step = (dates.len() / 6).max(1);
    for (i, d) in dates.iter().enumerate().filter(|(i, _)| i % step == 0) {
        let _ = i;
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{}" font-size="11" text-anchor="middle" fill="#444">{}</text>"##,
            x(d),
            H - PAD + 16.0,
            d.format("%m-%d")
        );
    }
    for (n, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[n % COLORS.len()];
        let points: Vec<String> = pts
            .iter()
            .map(|(d, v)| format!("{:.1},{:.1}", x(d), y(*v)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        for (d, v) in pts {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"><title>{} {}: {}</title></circle>"#,
                x(d),
                y(*v),
                esc(name),
                d,
                esc(&y_label(*v))
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" font-size="12" fill="{color}">{}</text>"#,
            PAD + 4.0 + 150.0 * (n % 4) as f64,
            16.0 + 14.0 * (n / 4) as f64,
            esc(name)
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

/// The top of a count axis above `max` with whole-number ticks: a multiple of 4.
fn whole_axis(max: i64) -> f64 {
    ((max + 1 + 3) / 4 * 4).max(4) as f64
}

/// Tick labels in one unit for the whole axis, chosen by its top: seconds, or minutes
/// when the axis reaches two minutes (never "104 s" beside "3.5 min").
fn seconds_axis(max: f64) -> impl Fn(f64) -> String {
    move |v: f64| {
        if max >= 120.0 {
            format!("{:.1} min", v / 60.0)
        } else if max >= 10.0 {
            format!("{v:.0} s")
        } else {
            format!("{v:.1} s")
        }
    }
}

fn by_name<T>(
    rows: &[T],
    name: impl Fn(&T) -> String,
    point: impl Fn(&T) -> (NaiveDate, f64),
) -> Vec<(String, Vec<(NaiveDate, f64)>)> {
    let mut out: Vec<(String, Vec<(NaiveDate, f64)>)> = Vec::new();
    for r in rows {
        let n = name(r);
        match out.iter_mut().find(|(x, _)| *x == n) {
            Some((_, pts)) => pts.push(point(r)),
            None => out.push((n, vec![point(r)])),
        }
    }
    out
}

impl Report {
    /// The page: self-contained HTML with inline SVG charts.
    pub fn html(&self) -> String {
        let pct = |v: f64| format!("{:.0}%", v * 100.0);
        let count = |v: f64| format!("{v:.0}");
        let success = by_name(
            &self.success,
            |r| r.dag_id.clone(),
            |r| (r.date, r.success_rate),
        );
        let runtime = by_name(
            &self.runtime,
            |r| r.dag_id.clone(),
            |r| (r.date, r.avg_runtime_seconds),
        );
        let max_rt = self
            .runtime
            .iter()
            .map(|r| r.avg_runtime_seconds)
            .fold(0.0, f64::max)
            * 1.1;
        let rt_unit = seconds_axis(max_rt);
        let volume = vec![(
            "tests run".to_string(),
            self.validation
                .iter()
                .map(|v| (v.date, v.tests as f64))
                .collect(),
        )];
        let max_tests = whole_axis(self.validation.iter().map(|v| v.tests).max().unwrap_or(0));
        let vrate = vec![(
            "tests passed".to_string(),
            self.validation
                .iter()
                .map(|v| (v.date, v.success_rate))
                .collect(),
        )];
        let mut html = String::new();
        let _ = write!(
            html,
            r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{t}</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;color:#222}}h1{{font-size:22px}}figure{{margin:16px 0}}
figcaption{{font-weight:600;margin-bottom:4px}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:13px}}pre{{background:#f6f6f6;padding:12px;white-space:pre-wrap}}</style></head><body>
<h1>{t}</h1><p>Generated {g} UTC from <code>dag_run_history</code>, <code>validation_run_history</code> and <code>pipeline_run_history</code>.</p>"#,
            t = esc(&self.title),
            g = self.generated_at.format("%Y-%m-%d %H:%M")
        );
        html.push_str(&line_chart("DAG success rate per day", &success, 1.0, &pct));
        html.push_str(&line_chart(
            "Average runtime per DAG per day",
            &runtime,
            max_rt,
            &rt_unit,
        ));
        html.push_str(&line_chart(
            "Validation tests per day",
            &volume,
            max_tests,
            &count,
        ));
        html.push_str(&line_chart(
            "Validation success rate per day",
            &vrate,
            1.0,
            &pct,
        ));
        self.pipeline_charts(&mut html);
        let _ = writeln!(
            html,
            "<h2>Summary</h2><pre>{}</pre></body></html>",
            esc(&self.markdown())
        );
        html
    }

    /// tributary's own pipelines: runs, failures, rows and duration per day, and the
    /// latest failed runs with their errors.
    fn pipeline_charts(&self, html: &mut String) {
        let count = |v: f64| format!("{v:.0}");
        let p = &self.pipelines;
        let runs = by_name(p, |r| r.pipeline.clone(), |r| (r.date, r.runs as f64));
        let fails = by_name(p, |r| r.pipeline.clone(), |r| (r.date, r.failures as f64));
        let rows = by_name(p, |r| r.pipeline.clone(), |r| (r.date, r.rows as f64));
        let dur = by_name(
            p,
            |r| r.pipeline.clone(),
            |r| (r.date, r.avg_duration_seconds),
        );
        let max_runs = whole_axis(p.iter().map(|r| r.runs).max().unwrap_or(0));
        let max_fails = whole_axis(p.iter().map(|r| r.failures).max().unwrap_or(0));
        let max_rows = p.iter().map(|r| r.rows).max().unwrap_or(0) as f64 * 1.1;
        let max_dur = p.iter().map(|r| r.avg_duration_seconds).fold(0.0, f64::max) * 1.1;
        let rows_unit = |v: f64| {
            if max_rows >= 2_000_000.0 {
                format!("{:.1} M", v / 1e6)
            } else if max_rows >= 2_000.0 {
                format!("{:.0} k", v / 1e3)
            } else {
                format!("{v:.0}")
            }
        };
        html.push_str("<h2>tributary pipelines</h2>");
        html.push_str(&line_chart(
            "Pipeline runs per day",
            &runs,
            max_runs,
            &count,
        ));
        html.push_str(&line_chart(
            "Failed pipeline runs per day",
            &fails,
            max_fails,
            &count,
        ));
        html.push_str(&line_chart(
            "Rows landed per pipeline per day",
            &rows,
            max_rows,
            &rows_unit,
        ));
        html.push_str(&line_chart(
            "Average pipeline run duration per day",
            &dur,
            max_dur,
            &seconds_axis(max_dur),
        ));
        html.push_str("<h3>Latest failed runs</h3>");
        if self.failed_runs.is_empty() {
            html.push_str("<p>None.</p>");
            return;
        }
        html.push_str(
            "<table><tr><th>started (UTC)</th><th>pipeline</th><th>run</th><th>error</th></tr>",
        );
        for r in &self.failed_runs {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                r.started_at.format("%Y-%m-%d %H:%M:%S"),
                esc(&r.pipeline),
                esc(&r.run_id),
                esc(r.error.as_deref().unwrap_or(""))
            );
        }
        html.push_str("</table>");
    }

    /// A short Markdown summary: the latest day per DAG, the week-over-week runtime
    /// change, and validation results.
    pub fn markdown(&self) -> String {
        let mut md = format!(
            "**{}** ({} UTC)\n\n",
            self.title,
            self.generated_at.format("%Y-%m-%d")
        );
        let mut dags: Vec<&str> = self.success.iter().map(|r| r.dag_id.as_str()).collect();
        dags.sort();
        dags.dedup();
        if dags.is_empty() {
            md.push_str("- No DAG runs recorded yet.\n");
        }
        for dag in dags {
            let last = self
                .success
                .iter()
                .filter(|r| r.dag_id == dag)
                .max_by_key(|r| r.date)
                .expect("has rows");
            let _ = write!(
                md,
                "- `{dag}` on {}: {}/{} runs succeeded ({:.0}%)",
                last.date,
                last.succeeded,
                last.finished,
                last.success_rate * 100.0
            );
            if let Some(rt) = self
                .runtime
                .iter()
                .filter(|r| r.dag_id == dag)
                .max_by_key(|r| r.date)
            {
                let _ = write!(md, ", average runtime {:.0} s", rt.avg_runtime_seconds);
                if let Some(c) = rt.week_over_week_change {
                    let _ = write!(md, " ({:+.0}% week over week)", c * 100.0);
                }
            }
            md.push_str(".\n");
        }
        match self.validation.iter().max_by_key(|v| v.date) {
            Some(v) => {
                let _ = writeln!(
                    md,
                    "- Validation on {}: {}/{} tests passed ({:.0}%).",
                    v.date,
                    v.passed,
                    v.tests,
                    v.success_rate * 100.0
                );
                let total: i64 = self.validation.iter().map(|v| v.tests).sum();
                let passed: i64 = self.validation.iter().map(|v| v.passed).sum();
                let _ = writeln!(
                    md,
                    "- Over {} day(s): {passed}/{total} tests passed.",
                    self.validation.len()
                );
            }
            None => md.push_str("- No validation tests recorded yet.\n"),
        }
        let mut names: Vec<&str> = self.pipelines.iter().map(|r| r.pipeline.as_str()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let last = self
                .pipelines
                .iter()
                .filter(|r| r.pipeline == name)
                .max_by_key(|r| r.date)
                .expect("has rows");
            let _ = writeln!(
                md,
                "- Pipeline `{name}` on {}: {} run(s), {} failed, {} rows.",
                last.date, last.runs, last.failures, last.rows
            );
        }
        if let Some(f) = self.failed_runs.first() {
            let _ = writeln!(
                md,
                "- Latest failed run: `{}` at {} UTC: {}",
                f.pipeline,
                f.started_at.format("%Y-%m-%d %H:%M"),
                f.error.as_deref().unwrap_or("(no message)")
            );
        }
        md
    }
}
