//! Medians, spreads and percentiles.

/// Summary of repeated measurements.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub(crate) struct Summary {
    /// Samples.
    pub(crate) n: usize,
    /// Median.
    pub(crate) median: f64,
    /// Smallest sample.
    pub(crate) min: f64,
    /// Largest sample.
    pub(crate) max: f64,
    /// Mean.
    pub(crate) mean: f64,
    /// Sample standard deviation (0 for one sample).
    pub(crate) stdev: f64,
}

impl Summary {
    /// Summarise `v` (empty: all zero).
    pub(crate) fn of(v: &[f64]) -> Summary {
        if v.is_empty() {
            return Summary::default();
        }
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let mean = s.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            s.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Summary {
            n,
            median: percentile(&s, 50.0),
            min: s[0],
            max: s[n - 1],
            mean,
            stdev: var.sqrt(),
        }
    }

    /// (max − min) / median, in percent.
    pub(crate) fn spread_pct(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.max - self.min) / self.median * 100.0
        }
    }
}

/// The `p`-th percentile of sorted samples, interpolated between the closest ranks.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        n => {
            let rank = p / 100.0 * (n - 1) as f64;
            let lo = rank.floor() as usize;
            let hi = rank.ceil() as usize;
            sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_percentiles() {
        let s = Summary::of(&[5.0, 1.0, 3.0]);
        assert_eq!((s.median, s.min, s.max, s.mean), (3.0, 1.0, 5.0, 3.0));
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((percentile(&v, 99.0) - 99.01).abs() < 1e-9);
        assert_eq!(percentile(&v, 50.0), 50.5);
    }
}
