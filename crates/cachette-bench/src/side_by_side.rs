//! Rounds that measure a cachette backend and a raw client side by side:
//! shared by the binaries that compare a backend with hand-written client
//! code on the same server (`#[path]`-included by `src/bin/redis.rs` and
//! `src/bin/memcached.rs`), so that they alternate and summarise the same
//! way.
//!
//! Each round runs both sides once, ours first in even rounds and raw first
//! in odd ones, and takes the ratio ours ÷ raw within the round; the
//! summary is the median of each side's rate and of the ratios, with the
//! ratios' range.

/// The median of `values` (the upper middle one for an even count); sorts
/// them.
pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One workload's rounds: operations per second of each side, and their
/// ratio within each round.
#[derive(Debug, Clone)]
pub(crate) struct SideBySide {
    ours: Vec<f64>,
    raw: Vec<f64>,
    ratios: Vec<f64>,
}

impl SideBySide {
    /// Runs `rounds` rounds (at least one) of `ours` and `raw`, each of
    /// which measures once and returns operations per second, alternating
    /// which goes first.
    pub(crate) async fn run<E>(
        rounds: usize,
        mut ours: impl AsyncFnMut() -> Result<f64, E>,
        mut raw: impl AsyncFnMut() -> Result<f64, E>,
    ) -> Result<SideBySide, E> {
        let rounds = rounds.max(1);
        let mut out = SideBySide {
            ours: Vec::with_capacity(rounds),
            raw: Vec::with_capacity(rounds),
            ratios: Vec::with_capacity(rounds),
        };
        for round in 0..rounds {
            let (a, b) = if round % 2 == 0 {
                let a = ours().await?;
                (a, raw().await?)
            } else {
                let b = raw().await?;
                (ours().await?, b)
            };
            out.ours.push(a);
            out.raw.push(b);
            out.ratios.push(a / b);
        }
        Ok(out)
    }

    /// The median ratio ours ÷ raw.
    pub(crate) fn ratio(&self) -> f64 {
        median(&mut self.ratios.clone())
    }

    /// The middle cells of a Markdown table row: `ours ops/s | raw ops/s |
    /// ratio [min–max]`, each a median over the rounds.
    pub(crate) fn cells(&self) -> String {
        let (min, max) = self
            .ratios
            .iter()
            .fold((f64::MAX, 0.0_f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        format!(
            "{:.0} | {:.0} | {:.2} [{min:.2}–{max:.2}]",
            median(&mut self.ours.clone()),
            median(&mut self.raw.clone()),
            self.ratio()
        )
    }
}
