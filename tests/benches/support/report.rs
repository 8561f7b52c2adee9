//! The table each scenario returns: one row per case, printed as Markdown so that a run can be
//! pasted into BENCHMARKS.md as it is.

use super::samples::{fmt_duration, Samples};

struct Row {
    case: String,
    n: String,
    median: String,
    p90: String,
    ratio: String,
}

/// A titled table of cases, each with its median, p90 and ratio to a baseline.
pub struct Report {
    title: String,
    rows: Vec<Row>,
    notes: Vec<String>,
}

fn ratio(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}x")
    } else {
        "-".into()
    }
}

impl Report {
    /// An empty table.
    pub fn new(title: impl Into<String>) -> Report {
        Report {
            title: title.into(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A latency row; its ratio is its median over the baseline's (lower is faster). Pass the
    /// baseline's own samples as its baseline to show `1.00x`, `None` to show `-`.
    pub fn latency(&mut self, case: &str, s: &Samples, baseline: Option<&Samples>) {
        let r = baseline.map_or("-".into(), |b| {
            ratio(s.median().as_secs_f64() / b.median().as_secs_f64())
        });
        self.rows.push(Row {
            case: case.into(),
            n: s.len().to_string(),
            median: fmt_duration(s.median()),
            p90: fmt_duration(s.p90()),
            ratio: r,
        });
    }

    /// A throughput row: `bytes` moved per sample. Median and p90 are of the round times,
    /// shown as speeds (so "p90" is the slow tail); the ratio is the median speed over the
    /// baseline's (1.00x: as fast; lower is slower).
    pub fn throughput(&mut self, case: &str, bytes: u64, s: &Samples, baseline: Option<&Samples>) {
        let speed = |d: std::time::Duration| bytes as f64 / d.as_secs_f64() / 1e6;
        let r = baseline.map_or("-".into(), |b| {
            ratio(b.median().as_secs_f64() / s.median().as_secs_f64())
        });
        self.rows.push(Row {
            case: case.into(),
            n: format!("{} x {} MiB", s.len(), bytes >> 20),
            median: format!("{:.0} MB/s", speed(s.median())),
            p90: format!("{:.0} MB/s", speed(s.p90())),
            ratio: r,
        });
    }

    /// A free-form row (memory per stack, counts, …).
    pub fn value(&mut self, case: &str, n: &str, median: &str, p90: &str, ratio: &str) {
        self.rows.push(Row {
            case: case.into(),
            n: n.into(),
            median: median.into(),
            p90: p90.into(),
            ratio: ratio.into(),
        });
    }

    /// A line printed under the table.
    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// Prints the table.
    pub fn print(&self) {
        let head = ["case", "n", "median", "p90", "vs baseline"];
        let cells: Vec<[&str; 5]> = self
            .rows
            .iter()
            .map(|r| [&*r.case, &*r.n, &*r.median, &*r.p90, &*r.ratio])
            .collect();
        let mut w = head.map(|h| h.chars().count());
        for c in &cells {
            for (i, x) in c.iter().enumerate() {
                w[i] = w[i].max(x.chars().count());
            }
        }
        let line = |c: [&str; 5]| {
            let mut s = String::from("|");
            for (i, x) in c.iter().enumerate() {
                let pad = w[i] - x.chars().count();
                if i == 0 {
                    s += &format!(" {x}{} |", " ".repeat(pad));
                } else {
                    s += &format!(" {}{x} |", " ".repeat(pad));
                }
            }
            s
        };
        println!("\n### {}\n", self.title);
        println!("{}", line(head));
        let mut sep = String::from("|");
        for (i, n) in w.iter().enumerate() {
            let dashes = "-".repeat(*n);
            sep += &if i == 0 {
                format!(" {dashes} |")
            } else {
                format!(" {}: |", &dashes[1..])
            };
        }
        println!("{sep}");
        for c in cells {
            println!("{}", line(c));
        }
        if !self.notes.is_empty() {
            println!();
            for n in &self.notes {
                println!("{n}");
            }
        }
    }
}
