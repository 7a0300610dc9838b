//! The result table (text) and its JSON form.

use std::collections::HashMap;
use std::fmt::Write as _;

/// Name of the reference system every ratio is taken against.
pub const REFERENCE: &str = "quinn";

/// One row of the table: a metric of a workload, with one value per system.
#[derive(Debug, Clone)]
pub struct Row {
    /// Workload name (`bulk`, `reqresp`, ...).
    pub workload: String,
    /// Metric name within the workload.
    pub metric: String,
    /// Unit of every value in the row.
    pub unit: String,
    /// Value per system name; absent means `-`.
    pub values: HashMap<String, f64>,
}

impl Row {
    /// `value / quinn's value` for `system`, if both exist and quinn's is non-zero.
    pub fn ratio(&self, system: &str) -> Option<f64> {
        let v = self.values.get(system)?;
        let q = self.values.get(REFERENCE)?;
        (*q != 0.0).then(|| v / q)
    }
}

/// All figures of a run, in the order they were first recorded.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Column order.
    pub systems: Vec<String>,
    /// Rows in insertion order.
    pub rows: Vec<Row>,
    /// Free-text notes printed under the table.
    pub notes: Vec<String>,
}

impl Report {
    /// A report with the given columns.
    pub fn new(systems: Vec<String>) -> Self {
        Report {
            systems,
            ..Report::default()
        }
    }

    /// Sets `system`'s value in the row (`workload`, `metric`), creating the row.
    pub fn set(&mut self, workload: &str, metric: &str, unit: &str, system: &str, value: f64) {
        if !self.systems.iter().any(|s| s == system) {
            self.systems.push(system.to_string());
        }
        let row = match self
            .rows
            .iter_mut()
            .position(|r| r.workload == workload && r.metric == metric)
        {
            Some(i) => &mut self.rows[i],
            None => {
                self.rows.push(Row {
                    workload: workload.to_string(),
                    metric: metric.to_string(),
                    unit: unit.to_string(),
                    values: HashMap::new(),
                });
                let last = self.rows.len() - 1;
                &mut self.rows[last]
            }
        };
        row.values.insert(system.to_string(), value);
    }

    /// Declares a row with no values yet, so it shows as `-` everywhere.
    pub fn declare(&mut self, workload: &str, metric: &str, unit: &str) {
        if !self
            .rows
            .iter()
            .any(|r| r.workload == workload && r.metric == metric)
        {
            self.rows.push(Row {
                workload: workload.to_string(),
                metric: metric.to_string(),
                unit: unit.to_string(),
                values: HashMap::new(),
            });
        }
    }

    /// The table as text (also valid Markdown).
    pub fn table(&self) -> String {
        let mut header = vec!["workload".to_string(), "metric".into(), "unit".into()];
        header.extend(self.systems.iter().cloned());
        let mut lines: Vec<Vec<String>> = vec![header];
        for r in &self.rows {
            let mut cells = vec![r.workload.clone(), r.metric.clone(), r.unit.clone()];
            for s in &self.systems {
                cells.push(match r.values.get(s) {
                    None => "-".into(),
                    Some(v) => match r.ratio(s) {
                        Some(x) if s != REFERENCE => format!("{} ({x:.2}x)", fmt_num(*v)),
                        _ => fmt_num(*v),
                    },
                });
            }
            lines.push(cells);
        }
        let cols = lines[0].len();
        let widths: Vec<usize> = (0..cols)
            .map(|c| lines.iter().map(|l| l[c].len()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for (i, l) in lines.iter().enumerate() {
            out.push('|');
            for (c, cell) in l.iter().enumerate() {
                if c < 3 {
                    let _ = write!(out, " {cell:<w$} |", w = widths[c]);
                } else {
                    let _ = write!(out, " {cell:>w$} |", w = widths[c]);
                }
            }
            out.push('\n');
            if i == 0 {
                out.push('|');
                for (c, w) in widths.iter().enumerate() {
                    out.push_str(&"-".repeat(w + 1));
                    out.push_str(if c < 3 { "-|" } else { ":|" });
                }
                out.push('\n');
            }
        }
        for n in &self.notes {
            let _ = writeln!(out, "- {n}");
        }
        out
    }

    /// Every figure as JSON: `{"meta": {...}, "figures": [{workload, system,
    /// metric, unit, value, ratio_to_quinn}, ...], "notes": [...]}`. Missing values
    /// (`-`) are written with `value: null`.
    pub fn json(&self, meta: &[(&str, String)]) -> String {
        let mut out = String::from("{\n  \"meta\": {");
        for (i, (k, v)) in meta.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(out, "{sep}\n    {}: {}", json_str(k), json_str(v));
        }
        out.push_str("\n  },\n  \"figures\": [");
        let mut first = true;
        for r in &self.rows {
            for s in &self.systems {
                let value = r.values.get(s).map_or("null".to_string(), |v| json_num(*v));
                let ratio = r.ratio(s).map_or("null".to_string(), json_num);
                let sep = if first { "" } else { "," };
                first = false;
                let _ = write!(
                    out,
                    "{sep}\n    {{\"workload\": {}, \"system\": {}, \"metric\": {}, \"unit\": {}, \"value\": {value}, \"ratio_to_quinn\": {ratio}}}",
                    json_str(&r.workload),
                    json_str(s),
                    json_str(&r.metric),
                    json_str(&r.unit),
                );
            }
        }
        out.push_str("\n  ],\n  \"notes\": [");
        for (i, n) in self.notes.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(out, "{sep}\n    {}", json_str(n));
        }
        out.push_str("\n  ]\n}\n");
        out
    }
}

/// Three significant digits, no exponent for ordinary magnitudes.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_table_and_json() {
        let mut r = Report::new(vec!["cusp".into(), "quinn".into(), "tcp".into()]);
        r.set("bulk", "goodput", "Gbit/s", "quinn", 2.0);
        r.set("bulk", "goodput", "Gbit/s", "tcp", 5.0);
        r.declare("churn", "streams/s", "1/s");
        assert_eq!(r.rows[0].ratio("tcp"), Some(2.5));
        assert_eq!(r.rows[0].ratio("cusp"), None);
        let t = r.table();
        assert!(t.contains("5.000 (2.50x)"), "{t}");
        assert!(t.contains(" - "), "{t}");
        let j = r.json(&[("mode", "quick".into())]);
        assert!(j.contains("\"ratio_to_quinn\": 2.5"), "{j}");
        assert!(j.contains("\"value\": null"), "{j}");
    }
}
