//! The rounds of `protobase bench` reduced to one row per scenario.
//!
//! One round of a scenario on a shared 2-core VM can land on a busy moment
//! of the disk or the scheduler; the ratio of one round (scenario and
//! baseline measured at the same moment) is what is comparable, and the
//! median over rounds is what a regression is judged by. The spread says
//! how far to trust it.

use serde_json::{Value, json};

use crate::bench::Row;

/// The median, minimum and maximum of one quantity over the rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stats {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Stats {
    /// Of `samples` (NaNs left out); all zero when there is none.
    pub(crate) fn of(samples: &[f64]) -> Stats {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return Stats {
                median: 0.0,
                min: 0.0,
                max: 0.0,
            };
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Stats {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }

    fn spread(&self) -> Value {
        json!({"min": self.min, "max": self.max})
    }
}

/// One scenario over every round.
#[derive(Debug, Clone)]
pub(crate) struct Aggregate {
    pub(crate) name: &'static str,
    pub(crate) unit: &'static str,
    pub(crate) baseline_desc: &'static str,
    higher_is_better: bool,
    pub(crate) rounds: usize,
    pub(crate) value: Stats,
    pub(crate) baseline: Stats,
    /// Of the rounds' own ratios (not median value ÷ median baseline).
    pub(crate) ratio: Stats,
}

impl Aggregate {
    /// `"higher"` or `"lower"`: which values are better.
    pub(crate) fn better(&self) -> &'static str {
        if self.higher_is_better {
            "higher"
        } else {
            "lower"
        }
    }

    /// The scenario's JSON entry: `value`, `unit`, `baseline`, `ratio`,
    /// `better`, `rounds` and `spread` (min and max of each).
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "value": self.value.median,
            "unit": self.unit,
            "baseline": self.baseline.median,
            "ratio": self.ratio.median,
            "better": self.better(),
            "rounds": self.rounds,
            "spread": {
                "value": self.value.spread(),
                "baseline": self.baseline.spread(),
                "ratio": self.ratio.spread(),
            },
        })
    }
}

/// One [`Aggregate`] per scenario, in the order of the first round that has
/// it.
pub(crate) fn aggregate(rounds: &[Vec<Row>]) -> Vec<Aggregate> {
    let mut names: Vec<&'static str> = Vec::new();
    for r in rounds.iter().flatten() {
        if !names.contains(&r.name) {
            names.push(r.name);
        }
    }
    names
        .into_iter()
        .filter_map(|name| {
            let rows: Vec<&Row> = rounds.iter().flatten().filter(|r| r.name == name).collect();
            let first = rows.first()?;
            let pick = |f: fn(&Row) -> f64| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
            Some(Aggregate {
                name,
                unit: first.unit,
                baseline_desc: first.baseline_desc,
                higher_is_better: first.higher_is_better(),
                rounds: rows.len(),
                value: Stats::of(&pick(|r| r.value)),
                baseline: Stats::of(&pick(|r| r.baseline)),
                ratio: Stats::of(&pick(Row::ratio)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &'static str, value: f64, baseline: f64) -> Row {
        Row {
            name,
            value,
            unit: "us p50",
            baseline,
            baseline_desc: "raw",
        }
    }

    #[test]
    fn medians_and_spread_over_rounds() {
        let s = Stats::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Stats::of(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
        assert_eq!(Stats::of(&[f64::NAN, 5.0]).median, 5.0);
        assert_eq!(Stats::of(&[]).median, 0.0);
    }

    /// The ratio is the median of each round's own ratio: a round where
    /// both the scenario and its baseline were slow does not count as a
    /// slow scenario.
    #[test]
    fn the_ratio_pairs_each_round() {
        let rounds = vec![
            vec![row("a", 10.0, 5.0), row("b", 1.0, 1.0)],
            vec![row("a", 40.0, 20.0)],
            vec![row("a", 12.0, 6.0), row("b", 3.0, 1.0)],
        ];
        let agg = aggregate(&rounds);
        assert_eq!(
            agg.iter().map(|a| a.name).collect::<Vec<_>>(),
            vec!["a", "b"]
        );
        let a = &agg[0];
        assert_eq!(a.rounds, 3);
        assert_eq!(a.ratio.median, 2.0);
        assert_eq!((a.ratio.min, a.ratio.max), (2.0, 2.0));
        assert_eq!(a.value.median, 12.0);
        assert_eq!(a.baseline.median, 6.0);
        assert_eq!(a.better(), "lower");
        let j = a.to_json();
        assert_eq!(j["spread"]["value"]["max"], 40.0);
        assert_eq!(j["rounds"], 3);
        assert_eq!(agg[1].rounds, 2);
        assert_eq!(agg[1].ratio.median, 2.0);
    }
}
